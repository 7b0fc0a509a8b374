"""A mapping file: one business's exports, each table's file and columns, in one YAML.

    # crm.yaml: `clm ingest --mapping crm.yaml -w shop`
    until: 2024-06-30              # the day the exports were taken (as --until)
    date_format: "%d/%m/%Y"        # read options for every file (the command line's, then each table's, win)
    tables:
      customers:
        file: customers.csv        # relative to the mapping file
        columns: {customer_id: Id, signup_time: Created, segment: Tier}
        attributes: [V1, V2]
      transactions:
        file: orders.csv
        columns: {customer_id: Customer, event_time: Date, amount: Total}
        decimal: ","
      campaigns:
        file: promotions.csv
        columns: {customer_id: Id, event_time: Sent, action: Offer}
        values: {action: {"10% off": voucher_10}}
        control_value: "No offer"
        randomised: true           # or targeted: true (chosen by a rule: probabilities estimated)

Fields and their meaning: `clm ingest --help`, or `pipelines.ingest.tables.TABLES`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clm.dates import parse_day
from clm.errors import ClmError
from clm.files import check_path_length, read_yaml_mapping
from pipelines.ingest.reading import ReadOptions
from pipelines.ingest.tables import INGEST_TABLES, ExportSource


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reading(_Strict):
    """Read options; left out: the defaults of `clm ingest`."""

    date_format: str | None = None
    sep: str | None = None
    decimal: str | None = Field(default=None, pattern=r"^[.,]$")
    encoding: str | None = None
    skip_bad_rows: bool | None = None
    drop_duplicates: bool | None = None
    earliest_date: str | int | None = None  # a number (19900101) is read as the text it is, and refused as a day


class TableMapping(Reading):
    file: Path
    columns: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    attributes: list[str] = Field(default_factory=list)
    control_value: str | None = None
    randomised: bool = False
    targeted: bool = False


class Mapping(Reading):
    tables: dict[str, TableMapping] = Field(min_length=1)
    until: str | int | None = None


@dataclass(frozen=True)
class MappedExports:
    """What a mapping file says: each table's export, and the day the exports were taken."""

    sources: list[ExportSource]
    until: pd.Timestamp | None


def _options(where: str, *layers: Reading) -> ReadOptions:
    """Each read option from the most specific layer that sets it; where: the mapping file
    and table, for a message."""
    chosen: dict[str, object] = {}
    for layer in layers:
        chosen.update({k: v for k, v in layer.model_dump().items() if k in Reading.model_fields and v is not None})
    earliest = chosen.pop("earliest_date", None)
    options = ReadOptions(**chosen)  # type: ignore[arg-type]
    if earliest is not None:
        options = ReadOptions(**{**options.__dict__, "earliest": parse_day(str(earliest), f"{where}: earliest_date")})
    return options


def read_mapping(path: Path, given: Reading = Reading()) -> MappedExports:
    """The exports a mapping file names; a mistake is named with its place in the file.
    given: read options given on the command line. The most specific wins: a table's own
    setting, then the command line's, then the file's top level (as `--until` wins over
    its `until:`)."""
    path = check_path_length(Path(path), "The mapping file")
    if not path.is_file():
        raise ClmError(f"Mapping file {path} not found.")
    raw = read_yaml_mapping(path, "Mapping file", "'tables' (and optional read options)")
    try:
        mapping = Mapping.model_validate(raw)
    except ValidationError as err:
        problems = [f"  - {'.'.join(str(x) for x in e['loc']) or 'mapping'}: {e['msg']}" for e in err.errors()]
        raise ClmError(f"Mapping file {path} has {len(problems)} problem(s):\n" + "\n".join(problems)
                       + f"\nIts tables may be: {', '.join(INGEST_TABLES)}. Quote a word YAML would read as "
                       "yes/no or a number (\"yes\", \"No\", \"10\").") from None
    unknown = sorted(set(mapping.tables) - set(INGEST_TABLES))
    if unknown:
        raise ClmError(f"Mapping file {path}: {', '.join(unknown)} is not a table clm ingests; the tables are: "
                       f"{', '.join(INGEST_TABLES)}.")
    sources = []
    for name, table in mapping.tables.items():
        file = table.file if table.file.is_absolute() else path.parent / table.file
        sources.append(ExportSource(name, file, dict(table.columns), _options(f"Mapping file {path}, table {name}", mapping, given, table),
                                    {k: dict(v) for k, v in table.values.items()}, tuple(table.attributes),
                                    table.control_value, table.randomised, table.targeted))
    until = None if mapping.until is None else parse_day(str(mapping.until), f"Mapping file {path}: until")
    return MappedExports(sources, until)
