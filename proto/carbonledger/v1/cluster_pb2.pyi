from carbonledger.v1 import log_pb2 as _log_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetBlocksRequest(_message.Message):
    __slots__ = ("first_height", "known_size", "max_blocks")
    FIRST_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    KNOWN_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    first_height: int
    known_size: int
    max_blocks: int
    def __init__(self, first_height: _Optional[int] = ..., known_size: _Optional[int] = ..., max_blocks: _Optional[int] = ...) -> None: ...

class BlockWithEntries(_message.Message):
    __slots__ = ("block", "entries")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    block: bytes
    entries: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, block: _Optional[bytes] = ..., entries: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetBlocksResponse(_message.Message):
    __slots__ = ("blocks", "checkpoint", "consistency", "head_height", "has_position", "applied_seq", "applied_revision")
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    HEAD_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    HAS_POSITION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[BlockWithEntries]
    checkpoint: str
    consistency: _containers.RepeatedScalarFieldContainer[bytes]
    head_height: int
    has_position: bool
    applied_seq: int
    applied_revision: int
    def __init__(self, blocks: _Optional[_Iterable[_Union[BlockWithEntries, _Mapping]]] = ..., checkpoint: _Optional[str] = ..., consistency: _Optional[_Iterable[bytes]] = ..., head_height: _Optional[int] = ..., has_position: _Optional[bool] = ..., applied_seq: _Optional[int] = ..., applied_revision: _Optional[int] = ...) -> None: ...

class GetBlockNoteRequest(_message.Message):
    __slots__ = ("height",)
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    height: int
    def __init__(self, height: _Optional[int] = ...) -> None: ...

class GetBlockNoteResponse(_message.Message):
    __slots__ = ("note", "head_height")
    NOTE_FIELD_NUMBER: _ClassVar[int]
    HEAD_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    note: str
    head_height: int
    def __init__(self, note: _Optional[str] = ..., head_height: _Optional[int] = ...) -> None: ...

class AddCheckpointRequest(_message.Message):
    __slots__ = ("old_size", "consistency", "checkpoint")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    consistency: _containers.RepeatedScalarFieldContainer[bytes]
    checkpoint: str
    def __init__(self, old_size: _Optional[int] = ..., consistency: _Optional[_Iterable[bytes]] = ..., checkpoint: _Optional[str] = ...) -> None: ...

class WitnessRefusal(_message.Message):
    __slots__ = ("http_status", "kind", "reason", "known_size")
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    KNOWN_SIZE_FIELD_NUMBER: _ClassVar[int]
    http_status: int
    kind: str
    reason: str
    known_size: int
    def __init__(self, http_status: _Optional[int] = ..., kind: _Optional[str] = ..., reason: _Optional[str] = ..., known_size: _Optional[int] = ...) -> None: ...

class AddCheckpointResponse(_message.Message):
    __slots__ = ("cosignature", "refusal")
    COSIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    cosignature: str
    refusal: WitnessRefusal
    def __init__(self, cosignature: _Optional[str] = ..., refusal: _Optional[_Union[WitnessRefusal, _Mapping]] = ...) -> None: ...

class GetCosignedCheckpointRequest(_message.Message):
    __slots__ = ("min_cosignatures",)
    MIN_COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    min_cosignatures: int
    def __init__(self, min_cosignatures: _Optional[int] = ...) -> None: ...

class CosignedCheckpoint(_message.Message):
    __slots__ = ("tree_size", "note", "witnesses")
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    WITNESSES_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    note: str
    witnesses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tree_size: _Optional[int] = ..., note: _Optional[str] = ..., witnesses: _Optional[_Iterable[str]] = ...) -> None: ...

class GetCosignedTlogProofRequest(_message.Message):
    __slots__ = ("index", "min_cosignatures")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MIN_COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    index: int
    min_cosignatures: int
    def __init__(self, index: _Optional[int] = ..., min_cosignatures: _Optional[int] = ...) -> None: ...

class GetClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerRefusal(_message.Message):
    __slots__ = ("peer", "tree_size", "kind", "reason")
    PEER_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    peer: str
    tree_size: int
    kind: str
    reason: str
    def __init__(self, peer: _Optional[str] = ..., tree_size: _Optional[int] = ..., kind: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("node_id", "applied_revision", "tree_size", "root_hash", "cosigned_size", "refusals", "blocks_from_peers", "applied_seq", "block_conflicts", "recent_block_conflicts")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    COSIGNED_SIZE_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FROM_PEERS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    BLOCK_CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    RECENT_BLOCK_CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    applied_revision: int
    tree_size: int
    root_hash: bytes
    cosigned_size: int
    refusals: _containers.RepeatedCompositeFieldContainer[PeerRefusal]
    blocks_from_peers: int
    applied_seq: int
    block_conflicts: int
    recent_block_conflicts: _containers.RepeatedCompositeFieldContainer[BlockConflictSeen]
    def __init__(self, node_id: _Optional[str] = ..., applied_revision: _Optional[int] = ..., tree_size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., cosigned_size: _Optional[int] = ..., refusals: _Optional[_Iterable[_Union[PeerRefusal, _Mapping]]] = ..., blocks_from_peers: _Optional[int] = ..., applied_seq: _Optional[int] = ..., block_conflicts: _Optional[int] = ..., recent_block_conflicts: _Optional[_Iterable[_Union[BlockConflictSeen, _Mapping]]] = ...) -> None: ...

class BlockConflictSeen(_message.Message):
    __slots__ = ("height", "what", "signer", "evidence", "peer", "quorum_side", "times_seen")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    QUORUM_SIDE_FIELD_NUMBER: _ClassVar[int]
    TIMES_SEEN_FIELD_NUMBER: _ClassVar[int]
    height: int
    what: str
    signer: str
    evidence: str
    peer: str
    quorum_side: str
    times_seen: int
    def __init__(self, height: _Optional[int] = ..., what: _Optional[str] = ..., signer: _Optional[str] = ..., evidence: _Optional[str] = ..., peer: _Optional[str] = ..., quorum_side: _Optional[str] = ..., times_seen: _Optional[int] = ...) -> None: ...
