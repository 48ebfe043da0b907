"""WBCSD PACT Technical Specifications v3 ProductFootprint, as pydantic models.

Source: wbcsd/data-exchange-protocol, spec/v3/openapi.yaml (components/schemas
ProductFootprint, CarbonFootprint, ...) and spec/v3/examples/example-1.json.
A document that a supplier's PACT v3 system emits must validate unchanged, so
the models follow the schema's names and types exactly (decimals are strings,
date-times are RFC 3339 strings). Properties that v3 deprecated but that real
systems still carry over from 2.x (``productCategoryCpc``, ``version``,
``updated``, ``statusComment``) are accepted and ignored by the ledger.

Ledger-specific data never goes inside these fields: components and claims
travel beside the document in the operation body (see :mod:`ledger.records.ops`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from ledger.errors import MalformedError
from ledger.records._base import (
    LAST_INSTANT,
    MAX_LIST,
    DateTime,
    DecimalStr,
    LongText,
    NonNegDecimal,
    NonPosDecimal,
    PositiveDecimal,
    StrictModel,
    Text,
    Urn,
    Uuid,
    parse_datetime,
    validate_model,
)

__all__ = [
    "DECLARED_UNITS",
    "ProductFootprint",
    "CarbonFootprint",
    "parse_product_footprint",
    "check_product_footprint",
    "FootprintSummary",
]

#: CarbonFootprint.declaredUnitOfMeasurement values (PACT v3, methodology 3.2.4).
DECLARED_UNITS = (
    "liter",
    "kilogram",
    "cubic meter",
    "kilowatt hour",
    "megajoule",
    "ton kilometer",
    "square meter",
    "piece",
    "hour",
    "megabit second",
)
DeclaredUnit = Literal[
    "liter",
    "kilogram",
    "cubic meter",
    "kilowatt hour",
    "megajoule",
    "ton kilometer",
    "square meter",
    "piece",
    "hour",
    "megabit second",
]
Region = Literal[
    "Africa", "Americas", "Asia", "Europe", "Oceania", "Australia and New Zealand",
    "Central Asia", "Eastern Asia", "Eastern Europe", "Latin America and the Caribbean",
    "Melanesia", "Micronesia", "Northern Africa", "Northern America", "Northern Europe",
    "Polynesia", "South-eastern Asia", "Southern Asia", "Southern Europe",
    "Sub-Saharan Africa", "Western Asia", "Western Europe",
]  # fmt: skip
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
UrnSet = Annotated[list[Urn], Field(min_length=1, max_length=MAX_LIST)]


class ProductOrSectorSpecificRule(StrictModel):
    operator: Literal["PEF", "EPD International", "Other"]
    ruleNames: Annotated[list[NonEmpty], Field(min_length=1, max_length=MAX_LIST)]
    otherOperatorName: NonEmpty | None = None


class EmissionFactorSource(StrictModel):
    name: NonEmpty
    version: NonEmpty


class DataQualityIndicators(StrictModel):
    technologicalDQR: DecimalStr
    geographicalDQR: DecimalStr
    temporalDQR: DecimalStr


class Verification(StrictModel):
    coverage: Literal["PCF calculation model", "PCF program", "product level"] | None = None
    providerName: Text | None = None
    completedAt: DateTime | None = None
    standardName: Text | None = None
    comments: LongText | None = None


class DataModelExtension(StrictModel):
    specVersion: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
    dataSchema: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    documentation: Annotated[str, StringConstraints(max_length=1024)] | None = None
    # Extension data is opaque to the ledger; the payload size cap bounds it.
    data: dict[str, Any]


class CarbonFootprint(StrictModel):
    declaredUnitOfMeasurement: DeclaredUnit
    declaredUnitAmount: PositiveDecimal
    productMassPerDeclaredUnit: NonNegDecimal
    referencePeriodStart: DateTime
    referencePeriodEnd: DateTime
    geographyRegionOrSubregion: Region | None = None
    geographyCountry: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    geographyCountrySubdivision: (
        Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$")] | None
    ) = None
    boundaryProcessesDescription: LongText | None = None
    pcfExcludingBiogenicUptake: DecimalStr
    pcfIncludingBiogenicUptake: DecimalStr
    fossilGhgEmissions: NonNegDecimal
    fossilCarbonContent: NonNegDecimal
    biogenicCarbonContent: NonNegDecimal | None = None
    recycledCarbonContent: NonNegDecimal | None = None
    landUseChangeGhgEmissions: NonNegDecimal | None = None
    landCarbonLeakage: NonNegDecimal | None = None
    landManagementFossilGhgEmissions: NonNegDecimal | None = None
    landManagementBiogenicCO2Emissions: NonNegDecimal | None = None
    landManagementBiogenicCO2Removals: NonPosDecimal | None = None
    biogenicCO2Uptake: NonPosDecimal | None = None
    biogenicNonCO2Emissions: NonNegDecimal | None = None
    landAreaOccupation: NonNegDecimal | None = None
    aircraftGhgEmissions: NonNegDecimal | None = None
    packagingEmissionsIncluded: bool | None = None
    packagingGhgEmissions: NonNegDecimal | None = None
    packagingBiogenicCarbonContent: NonNegDecimal | None = None
    outboundLogisticsGhgEmissions: NonNegDecimal | None = None
    technologicalCO2CaptureOrigin: LongText | None = None
    technologicalCO2Removals: NonNegDecimal | None = None
    ccsTechnologicalCO2CaptureIncluded: bool | None = None
    ccsTechnologicalCO2Capture: NonPosDecimal | None = None
    ccuCarbonContent: NonNegDecimal | None = None
    ccuCalculationApproach: Literal["Cut-off", "Credit"] | None = None
    ccuCreditCertification: Annotated[str, StringConstraints(max_length=1024)] | None = None
    ipccCharacterizationFactors: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^AR\d{1,3}$")]],
        Field(min_length=1, max_length=16),
    ]
    # The spec lists known values but says hosts MUST accept later revisions'
    # values, so any non-empty string is taken.
    crossSectoralStandards: Annotated[list[NonEmpty], Field(min_length=1, max_length=MAX_LIST)]
    productOrSectorSpecificRules: (
        Annotated[list[ProductOrSectorSpecificRule], Field(max_length=MAX_LIST)] | None
    ) = None
    # The spec's own example-1.json carries this at CarbonFootprint level, so a
    # conforming emitter may too.
    otherOperatorName: NonEmpty | None = None
    exemptedEmissionsPercent: NonNegDecimal
    exemptedEmissionsDescription: LongText | None = None
    allocationRulesDescription: LongText | None = None
    secondaryEmissionFactorSources: (
        Annotated[list[EmissionFactorSource], Field(min_length=1, max_length=MAX_LIST)] | None
    ) = None
    primaryDataShare: NonNegDecimal | None = None
    dqi: DataQualityIndicators | None = None
    verification: Verification | None = None


class ProductFootprint(StrictModel):
    id: Uuid
    specVersion: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+(-\d{8})?$")]
    precedingPfIds: Annotated[list[Uuid], Field(min_length=1, max_length=MAX_LIST)] | None = None
    version: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None  # deprecated in 3.0
    created: DateTime
    updated: DateTime | None = None  # deprecated in 3.0
    status: Literal["Active", "Deprecated"]
    statusComment: LongText | None = None
    validityPeriodStart: DateTime | None = None
    validityPeriodEnd: DateTime | None = None
    companyName: NonEmpty
    companyIds: UrnSet
    productDescription: LongText
    productIds: UrnSet
    productClassifications: UrnSet | None = None
    productCategoryCpc: NonEmpty | None = None  # deprecated in 2.3
    productNameCompany: NonEmpty
    comment: LongText | None = None
    pcf: CarbonFootprint
    extensions: Annotated[list[DataModelExtension], Field(min_length=1, max_length=64)] | None = None


@dataclass(frozen=True, slots=True)
class FootprintSummary:
    """What the state machine needs from a footprint, in ledger terms."""

    id: str  # lower-case UUID
    preceding: tuple[str, ...]
    status: str
    unit: str
    unit_amount: str
    pcf: str  # pcfExcludingBiogenicUptake, kgCO2e per declared unit
    ref_start: int
    ref_end: int
    product_name: str


def _unique(values: list[str] | None, what: str, *, fold: bool = False) -> None:
    if values is None:
        return
    seen = [v.lower() if fold else v for v in values]
    if len(set(seen)) != len(seen):
        raise MalformedError(what, "must not contain duplicates")


def _plus_years(ts: int, years: int) -> int:
    """``ts`` moved ``years`` years on; past year 9999 a bound above every
    date-time :func:`parse_datetime` returns."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    if dt.year + years > 9999:
        return LAST_INSTANT + 1
    try:
        moved = dt.replace(year=dt.year + years)
    except ValueError:  # 29 February into a non-leap year
        moved = dt.replace(year=dt.year + years, day=28)
    return int(moved.timestamp())


def parse_product_footprint(
    obj: Any, *, where: str = "footprint"
) -> tuple[ProductFootprint, FootprintSummary]:
    """Validate a PACT v3 ProductFootprint (already JSON-decoded): the schema,
    then :func:`check_product_footprint`."""
    doc = validate_model(ProductFootprint, obj, where=where)
    return doc, check_product_footprint(doc, where=where)


def check_product_footprint(doc: ProductFootprint, *, where: str = "footprint") -> FootprintSummary:
    """The cross-field rules of the spec that a schema cannot say: major version 3,
    referencePeriodStart < referencePeriodEnd, the validity period bounds, the
    sets without duplicates, DQR ratings within 1..5, and packaging emissions
    only when packaging is included. Raises MalformedError naming the field.
    """
    p = doc.pcf
    if not doc.specVersion.startswith("3."):
        raise MalformedError(f"{where}.specVersion", "must be a PACT 3.x version")
    _unique(doc.precedingPfIds, f"{where}.precedingPfIds", fold=True)
    _unique(doc.companyIds, f"{where}.companyIds")
    _unique(doc.productIds, f"{where}.productIds")
    _unique(doc.productClassifications, f"{where}.productClassifications")
    _unique(p.ipccCharacterizationFactors, f"{where}.pcf.ipccCharacterizationFactors")
    _unique(p.crossSectoralStandards, f"{where}.pcf.crossSectoralStandards")
    if doc.precedingPfIds and doc.id.lower() in (x.lower() for x in doc.precedingPfIds):
        raise MalformedError(f"{where}.precedingPfIds", "must not contain the footprint's own id")
    ref_start = parse_datetime(p.referencePeriodStart, what=f"{where}.pcf.referencePeriodStart")
    ref_end = parse_datetime(p.referencePeriodEnd, what=f"{where}.pcf.referencePeriodEnd")
    if not ref_start < ref_end:
        raise MalformedError(
            f"{where}.pcf.referencePeriodEnd", "must be after referencePeriodStart"
        )
    parse_datetime(doc.created, what=f"{where}.created")
    if (doc.validityPeriodStart is None) != (doc.validityPeriodEnd is None):
        raise MalformedError(f"{where}.validityPeriodEnd", "validity period needs start and end")
    if doc.validityPeriodStart is not None and doc.validityPeriodEnd is not None:
        v_start = parse_datetime(doc.validityPeriodStart, what=f"{where}.validityPeriodStart")
        v_end = parse_datetime(doc.validityPeriodEnd, what=f"{where}.validityPeriodEnd")
        if v_start < ref_end:
            raise MalformedError(
                f"{where}.validityPeriodStart", "must not be before referencePeriodEnd"
            )
        if not v_start < v_end:
            raise MalformedError(f"{where}.validityPeriodEnd", "must be after validityPeriodStart")
        if v_end > _plus_years(ref_end, 3):
            raise MalformedError(
                f"{where}.validityPeriodEnd", "must be within 3 years of referencePeriodEnd"
            )
    if p.dqi is not None:
        for name in ("technologicalDQR", "geographicalDQR", "temporalDQR"):
            if not Decimal(1) <= Decimal(getattr(p.dqi, name)) <= Decimal(5):
                raise MalformedError(f"{where}.pcf.dqi.{name}", "must be between 1 and 5")
    if p.packagingEmissionsIncluded is False and p.packagingGhgEmissions is not None:
        raise MalformedError(
            f"{where}.pcf.packagingGhgEmissions",
            "must be undefined when packagingEmissionsIncluded is false",
        )
    if Decimal(p.pcfExcludingBiogenicUptake) < 0:
        raise MalformedError(f"{where}.pcf.pcfExcludingBiogenicUptake", "must not be negative")
    # Geography granularity (one of region/country/subdivision) is not
    # enforced: the spec's own example-1.json sets all three.
    return FootprintSummary(
        id=doc.id.lower(),
        preceding=tuple(x.lower() for x in doc.precedingPfIds or ()),
        status=doc.status,
        unit=p.declaredUnitOfMeasurement,
        unit_amount=p.declaredUnitAmount,
        pcf=p.pcfExcludingBiogenicUptake,
        ref_start=ref_start,
        ref_end=ref_end,
        product_name=doc.productNameCompany,
    )
