from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BookRow(_message.Message):
    __slots__ = ("account", "kind", "batch", "start", "end", "amount")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    account: str
    kind: str
    batch: str
    start: int
    end: int
    amount: int
    def __init__(self, account: _Optional[str] = ..., kind: _Optional[str] = ..., batch: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., amount: _Optional[int] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ("rows", "tree_size", "page_size", "page_token")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[BookRow]
    tree_size: int
    page_size: int
    page_token: str
    def __init__(self, rows: _Optional[_Iterable[_Union[BookRow, _Mapping]]] = ..., tree_size: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class Mismatch(_message.Message):
    __slots__ = ("kind", "account", "asset", "batch", "start", "end", "books_amount", "ledger_amount", "detail", "proving_indexes", "row")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Mismatch.Kind]
        NOT_HELD_ON_LEDGER: _ClassVar[Mismatch.Kind]
        MISSING_FROM_BOOKS: _ClassVar[Mismatch.Kind]
        AMOUNT_DIFFERS: _ClassVar[Mismatch.Kind]
        STATUS_DIFFERS: _ClassVar[Mismatch.Kind]
    KIND_UNSPECIFIED: Mismatch.Kind
    NOT_HELD_ON_LEDGER: Mismatch.Kind
    MISSING_FROM_BOOKS: Mismatch.Kind
    AMOUNT_DIFFERS: Mismatch.Kind
    STATUS_DIFFERS: Mismatch.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    BOOKS_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    LEDGER_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PROVING_INDEXES_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    kind: Mismatch.Kind
    account: str
    asset: str
    batch: str
    start: int
    end: int
    books_amount: int
    ledger_amount: int
    detail: str
    proving_indexes: _containers.RepeatedScalarFieldContainer[int]
    row: int
    def __init__(self, kind: _Optional[_Union[Mismatch.Kind, str]] = ..., account: _Optional[str] = ..., asset: _Optional[str] = ..., batch: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., books_amount: _Optional[int] = ..., ledger_amount: _Optional[int] = ..., detail: _Optional[str] = ..., proving_indexes: _Optional[_Iterable[int]] = ..., row: _Optional[int] = ...) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("checkpoint", "tree_size", "mismatches", "next_page_token")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    tree_size: int
    mismatches: _containers.RepeatedCompositeFieldContainer[Mismatch]
    next_page_token: str
    def __init__(self, checkpoint: _Optional[str] = ..., tree_size: _Optional[int] = ..., mismatches: _Optional[_Iterable[_Union[Mismatch, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
