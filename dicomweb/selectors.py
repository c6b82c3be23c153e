"""Reads of DICOMweb: QIDO-RS searches and the instances a WADO-RS request names,
always within what the caller may see (``access.selectors``).

Study and series attributes come from the database's columns; what the columns do
not hold (StudyTime, StudyID, ...) and every instance attribute come from each
instance's stored DICOM JSON (``Instance.dicom_json``), never from the files.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet

from access.selectors import study_is_visible, study_visibility_filter
from dicomweb.query import MATCHING, Level, Match, Query, keyword_of, vr_of, wildcard_regex
from ingest.header import read_dicom_json
from ingest.storage import default_storage
from network.selectors import AnyUser
from studies.models import BULK_DATA_URI_PREFIX, Instance, Series, Study

# Attributes returned at each level by default (PS3.18 Tables 10.6.3-3/4/5).
STUDY_DEFAULT = [
    "00080005", "00080020", "00080030", "00080050", "00080056", "00080061", "00080090",
    "00081190", "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010",
    "00201206", "00201208",
]  # fmt: skip
SERIES_DEFAULT = [
    "00080005", "00080056", "00080060", "0008103E", "00081190", "0020000E", "00200011",
    "00201209", "00400244", "00400245", "00400275", "00080021", "00080031",
]  # fmt: skip
INSTANCE_DEFAULT = [
    "00080005", "00080016", "00080018", "00080056", "00081190", "00200013", "00280008",
    "00280010", "00280011", "00280100",
]  # fmt: skip
# What "includefield=all" adds from the instances' data sets at the study and series
# levels: the patient and study modules, and the series module.
STUDY_LEVEL_GROUPS = {"0010"}
STUDY_LEVEL_TAGS = {
    "00080020", "00080030", "00080050", "00080051", "00080090", "00081030", "00081032",
    "00081060", "00081080", "0020000D", "00200010", "00321032", "00321060", "00401001",
    "00080080", "00080081", "00081048",
}  # fmt: skip
SERIES_LEVEL_TAGS = {
    "00080021", "00080031", "00080060", "00080070", "0008103E", "00081050", "00081070",
    "00081090", "00181030", "00180015", "00185100", "0020000E", "00200011", "00200060",
    "00400244", "00400245", "00400254", "00400275", "00080068",
}  # fmt: skip

# Database columns standing for attributes, per model.
STUDY_COLUMNS = {
    "StudyInstanceUID": "study_instance_uid",
    "StudyDate": "study_date",
    "AccessionNumber": "accession_number",
    "ReferringPhysicianName": "referring_physician",
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
    "StudyDescription": "study_description",
}
# Matched on columns, returned from the stored data set (which keeps the value as sent,
# e.g. a time's fraction).
STUDY_MATCH_COLUMNS = {
    **STUDY_COLUMNS,
    "StudyTime": "study_time",
    "StudyID": "dicom_study_id",
}
SERIES_COLUMNS = {
    "SeriesInstanceUID": "series_instance_uid",
    "Modality": "modality",
    "SeriesNumber": "series_number",
    "SeriesDescription": "series_description",
    "BodyPartExamined": "body_part",
}
INSTANCE_COLUMNS = {
    "SOPInstanceUID": "sop_instance_uid",
    "SOPClassUID": "sop_class_uid",
    "InstanceNumber": "instance_number",
}


def _element(tag: str, value: Any) -> dict[str, Any]:
    vr = vr_of(tag)
    if value is None or value == "" or value == []:
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        values = [{"Alphabetic": str(v)} for v in values]
    elif vr == "DA":
        values = [v.strftime("%Y%m%d") if hasattr(v, "strftime") else str(v) for v in values]
    return {"vr": vr, "Value": values}


def _filter(prefix: str, columns: dict[str, str], query: Query, level: Level) -> Q:
    """The query's matching on one model's columns (``prefix`` joins to it)."""
    q = Q()
    for keyword, values in query.filters.items():
        if keyword not in columns or MATCHING[keyword].level is not level:
            continue
        column = prefix + columns[keyword]
        key = MATCHING[keyword]
        if key.match is Match.UIDS:
            q &= Q(**{f"{column}__in": values})
        elif key.match is Match.NUMBER:
            q &= Q(**{column: int(values[0])})
        else:
            value = values[0]
            pattern = wildcard_regex(value)
            if pattern is None:
                q &= Q(**{f"{column}__iexact" if key.fold_case else column: value})
            elif pattern == "^.*$":
                continue
            elif value.endswith("*") and not any(c in value[:-1] for c in "*?"):
                lookup = "istartswith" if key.fold_case else "startswith"
                q &= Q(**{f"{column}__{lookup}": value[:-1]})
            else:
                q &= Q(**{f"{column}__{'iregex' if key.fold_case else 'regex'}": pattern})
    ranges: list[tuple[str, Any, Any]] = [(k, a, b) for k, (a, b) in query.dates.items()]
    ranges += [(k, a, b) for k, (a, b) in query.times.items()]
    for keyword, start, end in ranges:
        if keyword not in columns or MATCHING[keyword].level is not level:
            continue
        column = prefix + columns[keyword]
        if start:
            q &= Q(**{f"{column}__gte": start})
        if end:
            q &= Q(**{f"{column}__lte": end})
    return q


def visible_studies(*, user: AnyUser) -> QuerySet[Study]:
    reach = study_visibility_filter(user=user)
    qs = Study.objects.all()
    return qs if reach is None else qs.filter(reach)


def _study_filter(query: Query) -> Q:
    q = _filter("", STUDY_MATCH_COLUMNS, query, Level.STUDY)
    modalities = query.filters.get("ModalitiesInStudy")
    if modalities:
        q &= Q(Exists(Series.objects.filter(study_id=OuterRef("pk"), modality__in=modalities)))
    return q


# -- instance JSON ------------------------------------------------------------


def _parsed(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _pick(source: dict[str, Any], tags: set[str]) -> dict[str, Any]:
    return {t: source[t] for t in tags if t in source}


def _study_level(tag: str) -> bool:
    return tag[:4] in STUDY_LEVEL_GROUPS or tag in STUDY_LEVEL_TAGS


def _first_instance_json(
    study_ids: list[int] | None = None, series_ids: list[int] | None = None
) -> dict[int, dict[str, Any]]:
    """The data set of the first instance of each study (or series), by its id."""
    if study_ids is not None:
        firsts = (
            Instance.objects.filter(series__study_id__in=study_ids)
            .values("series__study_id")
            .annotate(first=Min("id"))
            .values_list("series__study_id", "first")
        )
    else:
        firsts = (
            Instance.objects.filter(series_id__in=series_ids or [])
            .values("series_id")
            .annotate(first=Min("id"))
            .values_list("series_id", "first")
        )
    owner_of = {first: owner for owner, first in firsts.order_by()}
    return {owner_of[pk]: _parsed(text) for pk, text in _json_texts(list(owner_of)).items()}


def _json_texts(instance_ids: list[int]) -> dict[int, str]:
    """The stored DICOM JSON of instances by id.  One whose JSON is not built yet (its
    study is still arriving, or a build task was lost) is read from its file, as a
    last resort; ``missing_json_studies`` tells the caller to have them built."""
    rows = Instance.objects.filter(pk__in=instance_ids).values_list(
        "pk", "dicom_json", "storage_key"
    )
    texts = {}
    for pk, text, key in rows:
        if not text:
            try:
                text = read_dicom_json(default_storage().path(key))
            except ValueError:  # an unsafe key is never opened
                text = ""
        texts[pk] = text
    return texts


def missing_json_studies(*, study_ids: list[int]) -> list[int]:
    """Of these studies, those with instances whose DICOM JSON is not built yet."""
    return sorted(
        set(
            Instance.objects.filter(series__study_id__in=study_ids, dicom_json="")
            .values_list("series__study_id", flat=True)
            .distinct()
        )
    )


# -- searches -------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of search results and whether more matched."""

    results: list[dict[str, Any]]
    more: bool
    study_ids: list[int]
    patient_ids: dict[int, str]


def _urls(base: str, study: str, series: str = "", sop: str = "") -> str:
    url = f"{base}/studies/{study}"
    if series:
        url += f"/series/{series}"
    if sop:
        url += f"/instances/{sop}"
    return url


def _study_attributes(
    study: Study,
    counts: dict[str, int],
    modalities: list[str],
    first: dict[str, Any],
    query: Query,
    base: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wanted = set(STUDY_DEFAULT) | {t for t in query.include if _study_level(t)}
    if query.include_all:
        wanted |= {t for t in first if _study_level(t)}
    for tag in wanted:
        if tag in first:
            out[tag] = first[tag]
    for keyword, column in STUDY_COLUMNS.items():
        tag = MATCHING[keyword].tag
        if tag in wanted:
            out[tag] = _element(tag, getattr(study, column))
    out["00080061"] = _element("00080061", modalities)
    out["00201206"] = _element("00201206", counts.get("series", 0))
    out["00201208"] = _element("00201208", counts.get("instances", 0))
    out["00081190"] = _element("00081190", _urls(base, study.study_instance_uid))
    out["00080056"] = _element("00080056", "ONLINE")
    return out


def _study_extras(study_ids: list[int]) -> tuple[dict[int, dict[str, int]], dict[int, list[str]]]:
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    modalities: dict[int, list[str]] = defaultdict(list)
    for study_id, n in (
        Series.objects.filter(study_id__in=study_ids)
        .values_list("study_id")
        .annotate(n=Count("id"))
        .order_by()
    ):
        counts[study_id]["series"] = n
    for study_id, n in (
        Instance.objects.filter(series__study_id__in=study_ids)
        .values_list("series__study_id")
        .annotate(n=Count("id"))
        .order_by()
    ):
        counts[study_id]["instances"] = n
    for study_id, modality in (
        Series.objects.filter(study_id__in=study_ids)
        .exclude(modality="")
        .values_list("study_id", "modality")
        .distinct()
        .order_by("study_id", "modality")
    ):
        modalities[study_id].append(modality)
    return counts, modalities


def studies_search(*, user: AnyUser, query: Query, base: str) -> Page:
    """QIDO-RS ``/studies``."""
    qs = visible_studies(user=user).filter(_study_filter(query)).order_by("pk")
    rows = list(qs[query.offset : query.offset + query.limit + 1])
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    ids = [s.pk for s in rows]
    counts, modalities = _study_extras(ids)
    firsts = _first_instance_json(study_ids=ids)
    results = [
        _sorted(
            _study_attributes(
                s,
                counts.get(s.pk, {}),
                modalities.get(s.pk, []),
                firsts.get(s.pk, {}),
                query,
                base,
            )
        )
        for s in rows
    ]
    return Page(results, more, ids, {s.pk: s.patient_id for s in rows})


def _series_attributes(
    series: Series,
    instances: int,
    first: dict[str, Any],
    query: Query,
    base: str,
    study_uid: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wanted = set(SERIES_DEFAULT) | {t for t in query.include if not _study_level(t)}
    if query.include_all:
        wanted |= {t for t in first if t in SERIES_LEVEL_TAGS}
    for tag in wanted:
        if tag in first:
            out[tag] = first[tag]
    for keyword, column in SERIES_COLUMNS.items():
        tag = MATCHING[keyword].tag
        if tag in wanted or tag in ("00080060", "0020000E", "00200011", "0008103E"):
            out[tag] = _element(tag, getattr(series, column))
    out["00201209"] = _element("00201209", instances)
    out["00081190"] = _element("00081190", _urls(base, study_uid, series.series_instance_uid))
    out["00080056"] = _element("00080056", "ONLINE")
    return out


def series_search(
    *, user: AnyUser, query: Query, base: str, study_uid: str | None = None
) -> Page | None:
    """QIDO-RS ``/series`` and ``/studies/{study}/series``; None if the study is not
    one the caller may see."""
    studies = visible_studies(user=user)
    if study_uid is not None:
        study = studies.filter(study_instance_uid=study_uid).first()
        if study is None:
            return None
        studies = studies.filter(pk=study.pk)
    # Study-level keys match in a study's own series search too: its series are
    # found only if the study matches them (PatientID of another patient: none).
    qs = Series.objects.filter(study__in=studies.filter(_study_filter(query)))
    qs = qs.filter(_filter("", SERIES_COLUMNS, query, Level.SERIES)).select_related("study")
    rows = list(qs.order_by("study_id", "pk")[query.offset : query.offset + query.limit + 1])
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    counts = dict(
        Instance.objects.filter(series__in=[s.pk for s in rows])
        .values_list("series_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    firsts = _first_instance_json(series_ids=[s.pk for s in rows])
    study_part: dict[int, dict[str, Any]] = {}
    if study_uid is None:
        study_ids = sorted({s.study_id for s in rows})
        extra_counts, modalities = _study_extras(study_ids)
        study_firsts = _first_instance_json(study_ids=study_ids)
        for s in rows:
            if s.study_id not in study_part:
                study_part[s.study_id] = _study_attributes(
                    s.study,
                    extra_counts.get(s.study_id, {}),
                    modalities.get(s.study_id, []),
                    study_firsts.get(s.study_id, {}),
                    query,
                    base,
                )
    results = []
    for s in rows:
        item = dict(study_part.get(s.study_id, {}))
        item.update(
            _series_attributes(
                s,
                counts.get(s.pk, 0),
                firsts.get(s.pk, {}),
                query,
                base,
                s.study.study_instance_uid,
            )
        )
        results.append(_sorted(item))
    study_ids = sorted({s.study_id for s in rows})
    return Page(results, more, study_ids, {s.study_id: s.study.patient_id for s in rows})


def instances_search(
    *,
    user: AnyUser,
    query: Query,
    base: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Page | None:
    """QIDO-RS ``/instances``, ``/studies/{study}/instances`` and
    ``/studies/{study}/series/{series}/instances``; None if the study or series is
    not one the caller may see."""
    studies = visible_studies(user=user)
    qs = Instance.objects.all()
    if study_uid is not None:
        study = studies.filter(study_instance_uid=study_uid).first()
        if study is None:
            return None
        studies = studies.filter(pk=study.pk)
        if series_uid is not None:
            if not Series.objects.filter(study=study, series_instance_uid=series_uid).exists():
                return None
            qs = qs.filter(series__series_instance_uid=series_uid)
    # The keys of the enclosing levels match in a scoped search too: a study's (or a
    # series') instances are found only if it matches them (Modality=MR in a CT
    # series: none).
    qs = qs.filter(series__study__in=studies.filter(_study_filter(query)))
    qs = qs.filter(_filter("series__", SERIES_COLUMNS, query, Level.SERIES))
    qs = qs.filter(_filter("", INSTANCE_COLUMNS, query, Level.INSTANCE))
    rows = list(
        qs.select_related("series__study")
        .defer("dicom_json")
        .order_by("series__study_id", "series_id", "instance_number", "pk")[
            query.offset : query.offset + query.limit + 1
        ]
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    texts = _json_texts([i.pk for i in rows])
    # Study and series attributes, for the forms that search across them.
    upper: dict[int, dict[str, Any]] = {}
    if series_uid is None:
        series_rows = {i.series_id: i.series for i in rows}
        series_counts = dict(
            Instance.objects.filter(series__in=list(series_rows))
            .values_list("series_id")
            .annotate(n=Count("id"))
            .order_by()
        )
        series_firsts = _first_instance_json(series_ids=list(series_rows))
        study_part: dict[int, dict[str, Any]] = {}
        if study_uid is None:
            study_ids = sorted({s.study_id for s in series_rows.values()})
            counts, modalities = _study_extras(study_ids)
            study_firsts = _first_instance_json(study_ids=study_ids)
            for s in series_rows.values():
                study_part.setdefault(
                    s.study_id,
                    _study_attributes(
                        s.study,
                        counts.get(s.study_id, {}),
                        modalities.get(s.study_id, []),
                        study_firsts.get(s.study_id, {}),
                        query,
                        base,
                    ),
                )
        for series_id, s in series_rows.items():
            item = dict(study_part.get(s.study_id, {}))
            item.update(
                _series_attributes(
                    s,
                    series_counts.get(series_id, 0),
                    series_firsts.get(series_id, {}),
                    query,
                    base,
                    s.study.study_instance_uid,
                )
            )
            upper[series_id] = item
    results = []
    for i in rows:
        data = _parsed(texts.get(i.pk, ""))
        wanted = set(INSTANCE_DEFAULT) | set(query.include)
        if query.include_all:
            wanted |= {t for t, v in data.items() if "BulkDataURI" not in v}
        item = dict(upper.get(i.series_id, {}))
        item.update({t: data[t] for t in wanted if t in data and "BulkDataURI" not in data[t]})
        for keyword, column in INSTANCE_COLUMNS.items():
            tag = MATCHING[keyword].tag
            item[tag] = _element(tag, getattr(i, column))
        item["00280008"] = data.get("00280008") or _element("00280008", i.number_of_frames)
        item["00081190"] = _element(
            "00081190",
            _urls(
                base,
                i.series.study.study_instance_uid,
                i.series.series_instance_uid,
                i.sop_instance_uid,
            ),
        )
        item["00080056"] = _element("00080056", "ONLINE")
        item.pop("00020010", None)
        results.append(_sorted(item))
    studies_seen = {i.series.study_id: i.series.study.patient_id for i in rows}
    return Page(results, more, sorted(studies_seen), studies_seen)


def _sorted(item: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(item.items()))


def ignored_names(query: Query) -> list[str]:
    return [keyword_of(t) if len(t) == 8 else t for t in query.ignored]


# -- retrieval --------------------------------------------------------------------


class Stored(NamedTuple):
    """One stored instance as retrieval needs it (no model object: a study of a
    thousand images is read as plain rows)."""

    pk: int
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    series_id: int
    transfer_syntax_uid: str
    storage_key: str
    number_of_frames: int


STORED_COLUMNS = (
    "pk",
    "sop_instance_uid",
    "sop_class_uid",
    "series__series_instance_uid",
    "series_id",
    "transfer_syntax_uid",
    "storage_key",
    "number_of_frames",
)


@dataclass(frozen=True)
class Target:
    """What a WADO-RS request names, once the caller may see it."""

    study: Study
    instances: list[Stored]  # in series, then instance-number order


def target_get(
    *, user: AnyUser, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> Target | None:
    """The study (and its instances, of one series or one instance if named) if the
    caller may see it and it holds them; None otherwise (answered 404 alike)."""
    try:
        study = Study.objects.select_related("facility").get(study_instance_uid=study_uid)
    except Study.DoesNotExist:
        return None
    if not study_is_visible(user=user, study=study):
        return None
    qs = Instance.objects.filter(series__study=study)
    if series_uid is not None:
        qs = qs.filter(series__series_instance_uid=series_uid)
    if sop_uid is not None:
        qs = qs.filter(sop_instance_uid=sop_uid)  # one row: no order to keep
    else:
        qs = qs.order_by("series__series_number", "series_id", "instance_number", "pk")
    instances = [Stored(*row) for row in qs.values_list(*STORED_COLUMNS)]
    if (series_uid is not None or sop_uid is not None) and not instances:
        return None
    return Target(study=study, instances=instances)


def metadata_chunks(*, target: Target, base: str, batch: int = 200) -> Iterator[str]:
    """The WADO-RS metadata of the target's instances as a JSON array, in pieces:
    each stored data set with its bulk data made absolute URIs.  Reads the stored
    JSON ``batch`` instances at a time, so a large study is never held whole."""
    ids = [i.pk for i in target.instances]
    by_id = {i.pk: i for i in target.instances}
    yield "["
    first = True
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        texts = _json_texts(chunk)
        parts = []
        for pk in chunk:
            instance = by_id[pk]
            text = texts.get(pk) or "{}"
            prefix = _urls(
                base,
                target.study.study_instance_uid,
                instance.series_instance_uid,
                instance.sop_instance_uid,
            )
            parts.append(text.replace(f'"{BULK_DATA_URI_PREFIX}', f'"{prefix}/bulk/'))
        yield ("" if first else ",") + ",".join(parts)
        first = False
    yield "]"
