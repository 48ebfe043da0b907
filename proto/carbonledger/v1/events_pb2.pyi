from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("from_index", "kinds", "op_types", "accounts")
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    OP_TYPES_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    from_index: int
    kinds: _containers.RepeatedScalarFieldContainer[str]
    op_types: _containers.RepeatedScalarFieldContainer[str]
    accounts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, from_index: _Optional[int] = ..., kinds: _Optional[_Iterable[str]] = ..., op_types: _Optional[_Iterable[str]] = ..., accounts: _Optional[_Iterable[str]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("index", "kind", "op", "org", "subject", "refs")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    index: int
    kind: str
    op: str
    org: str
    subject: str
    refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., kind: _Optional[str] = ..., op: _Optional[str] = ..., org: _Optional[str] = ..., subject: _Optional[str] = ..., refs: _Optional[_Iterable[str]] = ...) -> None: ...
