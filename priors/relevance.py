"""Which of a patient's earlier studies are relevant to the current one: a pure
function over what a PACS answers to a study-level C-FIND, with no Django and no
database, so it is tested exhaustively.

A candidate is relevant when it shares a **body region** with the current study or
the same **modality class**; it must be dated on or before the current study, no
more than ``max_years`` before it, and not be the current study itself.  Of the
relevant ones at most ``max_count`` are chosen: the closest matches first (same
region and modality class, then same region, then same modality class), the most
recent first within each; the choice is returned most recent first, each with the
reason it was chosen.

Body regions come from three places, all of which count:

- the Body Part Examined (0018,0015), e.g. ``CHEST``, ``LSPINE``,
  ``CHESTABDPELVIS`` (a compound value names every region in it);
- words of the study description, e.g. "CT ABD/PELVIS W CONTRAST", "XR KNEE 3V";
- the modality where it implies one (MG: breast).

The regions: head, neck, chest, abdomen, pelvis, spine, upper extremity, lower
extremity, breast (``REGION_KEYWORDS`` lists the words of each).  Modality classes:
CT, MR, radiography (CR, DX, DR, RG, XR), fluoroscopy (RF), ultrasound (US), nuclear
medicine (NM, PT), mammography (MG), angiography (XA); non-image modalities (SR, PR,
KO, OT, SEG, DOC, REG) have none.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HEAD = "head"
NECK = "neck"
CHEST = "chest"
ABDOMEN = "abdomen"
PELVIS = "pelvis"
SPINE = "spine"
UPPER_EXTREMITY = "upper extremity"
LOWER_EXTREMITY = "lower extremity"
BREAST = "breast"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


REGION_KEYWORDS: dict[str, frozenset[str]] = {
    HEAD: _words(
        "HEAD BRAIN SKULL CRANIUM CRANIAL ORBIT ORBITS SINUS SINUSES FACE FACIAL MAXILLOFACIAL "
        "MANDIBLE IAC IACS PITUITARY SELLA TMJ TEMPORAL MASTOID NASAL STROKE"
    ),
    NECK: _words("NECK THYROID LARYNX PHARYNX CAROTID CAROTIDS SOFTTISSUENECK"),
    CHEST: _words(
        "CHEST THORAX LUNG LUNGS RIB RIBS STERNUM HEART CARDIAC CORONARY PULMONARY CXR "
        "MEDIASTINUM PE"
    ),
    ABDOMEN: _words(
        "ABDOMEN ABD ABDOMINAL LIVER HEPATIC KIDNEY KIDNEYS RENAL PANCREAS GALLBLADDER RUQ "
        "SPLEEN KUB ENTEROGRAPHY BOWEL GI UROGRAM"
    ),
    PELVIS: _words(
        "PELVIS PELVIC BLADDER PROSTATE UTERUS OVARY OVARIES SCROTUM SCROTAL TESTES "
        "TRANSVAGINAL RECTUM"
    ),
    SPINE: _words(
        "SPINE SPINAL CSPINE TSPINE LSPINE CERVICAL LUMBAR LUMBOSACRAL SACRUM COCCYX MYELOGRAM"
    ),
    UPPER_EXTREMITY: _words(
        "SHOULDER SHOULDERS HUMERUS ELBOW FOREARM WRIST HAND HANDS FINGER FINGERS THUMB ARM "
        "CLAVICLE SCAPULA UPPEREXTREMITY UPPER_EXTREMITY"
    ),
    LOWER_EXTREMITY: _words(
        "HIP HIPS FEMUR THIGH KNEE KNEES TIBIA FIBULA LEG ANKLE FOOT FEET TOE TOES CALCANEUS "
        "LOWEREXTREMITY LOWER_EXTREMITY"
    ),
    BREAST: _words("BREAST BREASTS MAMMO MAMMOGRAM MAMMOGRAPHY"),
}
_REGION_OF_WORD: dict[str, str] = {
    word: region for region, words in REGION_KEYWORDS.items() for word in words
}
# Pieces of a compound Body Part Examined ("CHESTABDPELVIS", "ABDOMENPELVIS",
# "HEADNECK", "LSPINE"): words long enough not to hide inside unrelated ones.
_COMPOUND_PIECES: tuple[tuple[str, str], ...] = tuple(
    sorted(
        ((w, r) for w, r in _REGION_OF_WORD.items() if len(w) >= 4 or w == "ABD"),
        key=lambda wr: -len(wr[0]),
    )
)
# A modality that implies its region whatever the description says.
_MODALITY_REGION = {"MG": BREAST}

MODALITY_CLASS: dict[str, str] = {
    "CT": "CT",
    "MR": "MR",
    "CR": "radiography",
    "DX": "radiography",
    "DR": "radiography",
    "RG": "radiography",
    "XR": "radiography",
    "RF": "fluoroscopy",
    "US": "ultrasound",
    "NM": "nuclear medicine",
    "PT": "nuclear medicine",
    "MG": "mammography",
    "XA": "angiography",
}

_WORD = re.compile(r"[A-Z0-9_]+")


@dataclass(frozen=True)
class StudyFacts:
    """What is known of one study: the current one, or a PACS's C-FIND answer."""

    study_instance_uid: str
    study_date: dt.date | None
    modalities: tuple[str, ...] = ()
    body_part: str = ""
    description: str = ""
    accession_number: str = ""


@dataclass(frozen=True)
class Choice:
    """A prior chosen as relevant: the candidate, a reason code and its words."""

    prior: StudyFacts
    code: str  # "region_modality", "region" or "modality"
    reason: str


def regions_of(facts: StudyFacts) -> frozenset[str]:
    """The body regions a study covers (see the module's note); empty if unknown."""
    found: set[str] = set()
    for word in _WORD.findall(facts.body_part.upper()):
        region = _REGION_OF_WORD.get(word)
        if region is not None:
            found.add(region)
            continue
        found.update(region for piece, region in _COMPOUND_PIECES if piece in word)
    for word in _WORD.findall(facts.description.upper()):
        region = _REGION_OF_WORD.get(word) or (
            _REGION_OF_WORD.get(word[:-1]) if word.endswith("S") else None
        )
        if region is not None:
            found.add(region)
    found.update(_MODALITY_REGION[m] for m in _modalities(facts) if m in _MODALITY_REGION)
    return frozenset(found)


def modality_classes_of(facts: StudyFacts) -> frozenset[str]:
    """The modality classes of a study's image modalities (SR, PR, KO... have none)."""
    return frozenset(MODALITY_CLASS[m] for m in _modalities(facts) if m in MODALITY_CLASS)


def _modalities(facts: StudyFacts) -> Iterable[str]:
    for value in facts.modalities:
        yield from (m.strip().upper() for m in value.split("\\") if m.strip())


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year - years, day=28)


def relevant_priors(
    *,
    current: StudyFacts,
    candidates: Sequence[StudyFacts],
    max_count: int,
    max_years: int,
    today: dt.date,
) -> list[Choice]:
    """The relevant priors among ``candidates``, at most ``max_count``, most recent
    first, each with its reason.  Never the current study (by UID), never one dated
    after the current study (``today`` when it has no date), more than ``max_years``
    before it or undated, never one UID twice."""
    if max_count <= 0:
        return []
    reference = current.study_date or today
    earliest = _years_before(reference, max(0, max_years))
    regions = regions_of(current)
    classes = modality_classes_of(current)
    ranked: list[tuple[int, dt.date, Choice]] = []
    seen = {current.study_instance_uid}
    for candidate in candidates:
        if candidate.study_instance_uid in seen or not candidate.study_instance_uid:
            continue
        day = candidate.study_date
        if day is None or not earliest <= day <= reference:
            continue
        shared_regions = sorted(regions & regions_of(candidate))
        shared_classes = sorted(classes & modality_classes_of(candidate))
        if shared_regions and shared_classes:
            tier, code = 0, "region_modality"
            reason = (
                f"same body region ({', '.join(shared_regions)}) and modality "
                f"({', '.join(shared_classes)})"
            )
        elif shared_regions:
            tier, code = 1, "region"
            reason = f"same body region ({', '.join(shared_regions)})"
        elif shared_classes:
            tier, code = 2, "modality"
            reason = f"same modality ({', '.join(shared_classes)})"
        else:
            continue
        seen.add(candidate.study_instance_uid)
        ranked.append((tier, day, Choice(prior=candidate, code=code, reason=reason)))
    # Closest matches first, the most recent first among equals (the UID breaks ties
    # so the choice does not depend on the PACS's answer order).
    ranked.sort(key=lambda r: (r[0], -r[1].toordinal(), r[2].prior.study_instance_uid))
    chosen = ranked[:max_count]
    chosen.sort(key=lambda r: (-r[1].toordinal(), r[0], r[2].prior.study_instance_uid))
    return [choice for _, _, choice in chosen]
