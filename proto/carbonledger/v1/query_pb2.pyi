from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Key(_message.Message):
    __slots__ = ("vkey", "status", "added", "removed")
    VKEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    vkey: str
    status: str
    added: int
    removed: int
    def __init__(self, vkey: _Optional[str] = ..., status: _Optional[str] = ..., added: _Optional[int] = ..., removed: _Optional[int] = ...) -> None: ...

class Org(_message.Message):
    __slots__ = ("id", "name", "roles", "keys", "registered", "registered_by", "past_keys")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_BY_FIELD_NUMBER: _ClassVar[int]
    PAST_KEYS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    registered: int
    registered_by: str
    past_keys: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ..., registered: _Optional[int] = ..., registered_by: _Optional[str] = ..., past_keys: _Optional[int] = ...) -> None: ...

class GetOrgRequest(_message.Message):
    __slots__ = ("org_id",)
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    def __init__(self, org_id: _Optional[str] = ...) -> None: ...

class ListOrgsRequest(_message.Message):
    __slots__ = ("role", "page_size", "page_token")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    role: str
    page_size: int
    page_token: str
    def __init__(self, role: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOrgsResponse(_message.Message):
    __slots__ = ("orgs", "next_page_token")
    ORGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orgs: _containers.RepeatedCompositeFieldContainer[Org]
    next_page_token: str
    def __init__(self, orgs: _Optional[_Iterable[_Union[Org, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Attestation(_message.Message):
    __slots__ = ("verifier", "index", "assurance", "coverage", "standard_name")
    VERIFIER_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ASSURANCE_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    STANDARD_NAME_FIELD_NUMBER: _ClassVar[int]
    verifier: str
    index: int
    assurance: str
    coverage: str
    standard_name: str
    def __init__(self, verifier: _Optional[str] = ..., index: _Optional[int] = ..., assurance: _Optional[str] = ..., coverage: _Optional[str] = ..., standard_name: _Optional[str] = ...) -> None: ...

class Component(_message.Message):
    __slots__ = ("footprint_id", "quantity", "unit")
    FOOTPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    footprint_id: str
    quantity: str
    unit: str
    def __init__(self, footprint_id: _Optional[str] = ..., quantity: _Optional[str] = ..., unit: _Optional[str] = ...) -> None: ...

class StaleMark(_message.Message):
    __slots__ = ("upstream", "root", "index")
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    upstream: str
    root: str
    index: int
    def __init__(self, upstream: _Optional[str] = ..., root: _Optional[str] = ..., index: _Optional[int] = ...) -> None: ...

class UnitRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Footprint(_message.Message):
    __slots__ = ("id", "owner", "status", "stale", "stale_marks", "product_name", "unit", "unit_amount", "pcf", "reference_start", "reference_end", "published", "entry_digest", "preceding", "successor", "deprecated", "lineage", "components", "gec_claims", "ccer_claims", "attestations", "stale_incomplete", "versions")
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    STALE_MARKS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PCF_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_START_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_END_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    ENTRY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PRECEDING_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_FIELD_NUMBER: _ClassVar[int]
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    GEC_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    CCER_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    ATTESTATIONS_FIELD_NUMBER: _ClassVar[int]
    STALE_INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    owner: str
    status: str
    stale: bool
    stale_marks: _containers.RepeatedCompositeFieldContainer[StaleMark]
    product_name: str
    unit: str
    unit_amount: str
    pcf: str
    reference_start: int
    reference_end: int
    published: int
    entry_digest: str
    preceding: _containers.RepeatedScalarFieldContainer[str]
    successor: str
    deprecated: int
    lineage: str
    components: _containers.RepeatedCompositeFieldContainer[Component]
    gec_claims: _containers.RepeatedCompositeFieldContainer[UnitRange]
    ccer_claims: _containers.RepeatedCompositeFieldContainer[UnitRange]
    attestations: _containers.RepeatedCompositeFieldContainer[Attestation]
    stale_incomplete: bool
    versions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., owner: _Optional[str] = ..., status: _Optional[str] = ..., stale: _Optional[bool] = ..., stale_marks: _Optional[_Iterable[_Union[StaleMark, _Mapping]]] = ..., product_name: _Optional[str] = ..., unit: _Optional[str] = ..., unit_amount: _Optional[str] = ..., pcf: _Optional[str] = ..., reference_start: _Optional[int] = ..., reference_end: _Optional[int] = ..., published: _Optional[int] = ..., entry_digest: _Optional[str] = ..., preceding: _Optional[_Iterable[str]] = ..., successor: _Optional[str] = ..., deprecated: _Optional[int] = ..., lineage: _Optional[str] = ..., components: _Optional[_Iterable[_Union[Component, _Mapping]]] = ..., gec_claims: _Optional[_Iterable[_Union[UnitRange, _Mapping]]] = ..., ccer_claims: _Optional[_Iterable[_Union[UnitRange, _Mapping]]] = ..., attestations: _Optional[_Iterable[_Union[Attestation, _Mapping]]] = ..., stale_incomplete: _Optional[bool] = ..., versions: _Optional[_Iterable[str]] = ...) -> None: ...

class GetFootprintRequest(_message.Message):
    __slots__ = ("footprint_id",)
    FOOTPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    footprint_id: str
    def __init__(self, footprint_id: _Optional[str] = ...) -> None: ...

class ListFootprintsRequest(_message.Message):
    __slots__ = ("owner", "page_size", "page_token")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    owner: str
    page_size: int
    page_token: str
    def __init__(self, owner: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFootprintsResponse(_message.Message):
    __slots__ = ("footprints", "next_page_token")
    FOOTPRINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    footprints: _containers.RepeatedCompositeFieldContainer[Footprint]
    next_page_token: str
    def __init__(self, footprints: _Optional[_Iterable[_Union[Footprint, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Holding(_message.Message):
    __slots__ = ("account", "kind", "batch", "start", "end", "status", "retired_by_entry", "claimed_by")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RETIRED_BY_ENTRY_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_BY_FIELD_NUMBER: _ClassVar[int]
    account: str
    kind: str
    batch: str
    start: int
    end: int
    status: str
    retired_by_entry: int
    claimed_by: str
    def __init__(self, account: _Optional[str] = ..., kind: _Optional[str] = ..., batch: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., status: _Optional[str] = ..., retired_by_entry: _Optional[int] = ..., claimed_by: _Optional[str] = ...) -> None: ...

class ListHoldingsRequest(_message.Message):
    __slots__ = ("account", "page_size", "page_token")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account: str
    page_size: int
    page_token: str
    def __init__(self, account: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListHoldingsResponse(_message.Message):
    __slots__ = ("holdings", "next_page_token")
    HOLDINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    holdings: _containers.RepeatedCompositeFieldContainer[Holding]
    next_page_token: str
    def __init__(self, holdings: _Optional[_Iterable[_Union[Holding, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UnitEvent(_message.Message):
    __slots__ = ("index", "op", "kind", "batch", "start", "end", "detail")
    class DetailEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    index: int
    op: str
    kind: str
    batch: str
    start: int
    end: int
    detail: _containers.ScalarMap[str, str]
    def __init__(self, index: _Optional[int] = ..., op: _Optional[str] = ..., kind: _Optional[str] = ..., batch: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., detail: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListUnitHistoryRequest(_message.Message):
    __slots__ = ("kind", "start", "end", "page_size", "page_token")
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    kind: str
    start: int
    end: int
    page_size: int
    page_token: str
    def __init__(self, kind: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListUnitHistoryResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[UnitEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[UnitEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Retirement(_message.Message):
    __slots__ = ("kind", "index", "by", "beneficiary", "purpose", "period_start", "period_end", "start", "end")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    BENEFICIARY_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    kind: str
    index: int
    by: str
    beneficiary: str
    purpose: str
    period_start: int
    period_end: int
    start: int
    end: int
    def __init__(self, kind: _Optional[str] = ..., index: _Optional[int] = ..., by: _Optional[str] = ..., beneficiary: _Optional[str] = ..., purpose: _Optional[str] = ..., period_start: _Optional[int] = ..., period_end: _Optional[int] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class GetUnitRequest(_message.Message):
    __slots__ = ("kind", "serial")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    serial: int
    def __init__(self, kind: _Optional[str] = ..., serial: _Optional[int] = ...) -> None: ...

class Unit(_message.Message):
    __slots__ = ("kind", "serial", "batch", "owner", "status", "retirement", "claimed_by")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RETIREMENT_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_BY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    serial: int
    batch: str
    owner: str
    status: str
    retirement: Retirement
    claimed_by: str
    def __init__(self, kind: _Optional[str] = ..., serial: _Optional[int] = ..., batch: _Optional[str] = ..., owner: _Optional[str] = ..., status: _Optional[str] = ..., retirement: _Optional[_Union[Retirement, _Mapping]] = ..., claimed_by: _Optional[str] = ...) -> None: ...

class GetRetirementRequest(_message.Message):
    __slots__ = ("kind", "serial")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    serial: int
    def __init__(self, kind: _Optional[str] = ..., serial: _Optional[int] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("kind", "batch_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    batch_id: str
    def __init__(self, kind: _Optional[str] = ..., batch_id: _Optional[str] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("kind", "id", "project", "start", "end", "period_start", "period_end", "validity_end", "issued", "issued_to", "report")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_END_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    ISSUED_TO_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    project: str
    start: int
    end: int
    period_start: int
    period_end: int
    validity_end: int
    issued: int
    issued_to: str
    report: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., project: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., period_start: _Optional[int] = ..., period_end: _Optional[int] = ..., validity_end: _Optional[int] = ..., issued: _Optional[int] = ..., issued_to: _Optional[str] = ..., report: _Optional[str] = ...) -> None: ...
