"""carbonledger core: a verifiable log and the carbon state machine. Pure, no network."""
