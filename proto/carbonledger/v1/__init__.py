"""carbonledger.v1: the wire contract, generated from the .proto files beside
this module by ``proto/generate.py``. Do not edit the ``*_pb2*`` files."""
