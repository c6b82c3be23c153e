"""The fuzz oracle on its own: intact objects pass, hand-made defects are named.

No listener: these run in well under a second.  Each defect is built by hand
from a minimal data set, so a test says exactly which bytes are wrong.
"""

from __future__ import annotations

import random
import zlib

import pytest

from tests.ingest.fuzz import mutate, oracle
from tests.ingest.fuzz.mutate import element_bytes, item_bytes, sequence_bytes
from tests.ingest.fuzz.oracle import (
    DEFLATED_LE,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    JPEG2000,
    JPEG_BASELINE,
    RLE_LOSSLESS,
    Category,
)

CT = mutate.CT
SOP = "1.2.3.4"
UIDS = {0x00080016: CT, 0x00080018: SOP, 0x0020000D: "1.2.3.5", 0x0020000E: "1.2.3.6"}
ENCODINGS = {
    EXPLICIT_LE: (False, True),
    IMPLICIT_LE: (True, True),
    EXPLICIT_BE: (False, False),
}


def el(
    tag: int, vr: str, value: bytes, *, syntax: str = EXPLICIT_LE, undefined: bool = False
) -> bytes:
    implicit, little = ENCODINGS.get(syntax, (False, True))
    return element_bytes(tag, vr, value, implicit=implicit, little=little, undefined=undefined)


def ui(uid: str) -> bytes:
    raw = uid.encode()
    return raw + b"\0" if len(raw) % 2 else raw


def dataset(*extra: tuple[int, bytes], syntax: str = EXPLICIT_LE, uids: bool = True) -> bytes:
    """The four identifying UIDs and ``extra`` (tag, encoded element), by ascending tag."""
    parts = (
        [(tag, el(tag, "UI", ui(uid), syntax=syntax)) for tag, uid in UIDS.items()] if uids else []
    )
    return b"".join(raw for _, raw in sorted([*parts, *extra], key=lambda p: p[0]))


def defects(
    data: bytes, syntax: str = EXPLICIT_LE, *, sop_class: str = CT, sop: str = SOP
) -> list[str]:
    return oracle.check(
        data, transfer_syntax=syntax, request_sop_class=sop_class, request_sop_instance=sop
    )


def assert_one(found: list[str], category: Category, fragment: str) -> None:
    """The first defect is of ``category`` and says ``fragment``."""
    assert found, f"expected a {category} defect saying {fragment!r}, found none"
    assert oracle.category_of(found[0]) == category, found
    assert fragment in found[0], found


def pixel_module(
    rows: int = 2, columns: int = 2, bits: int = 16, frames: int | None = None
) -> list[tuple[int, bytes]]:
    parts = [
        (0x00280002, el(0x00280002, "US", (1).to_bytes(2, "little"))),
        (0x00280010, el(0x00280010, "US", rows.to_bytes(2, "little"))),
        (0x00280011, el(0x00280011, "US", columns.to_bytes(2, "little"))),
        (0x00280100, el(0x00280100, "US", bits.to_bytes(2, "little"))),
    ]
    if frames is not None:
        text = str(frames).encode()
        parts.append((0x00280008, el(0x00280008, "IS", text + b" " * (len(text) % 2))))
    return parts


def encapsulated(
    *fragments: bytes, offset_table: bytes = b"", delimiter: bool = True
) -> tuple[int, bytes]:
    items = item_bytes(offset_table, defined=True, little=True) + b"".join(
        item_bytes(f, defined=True, little=True) for f in fragments
    )
    tail = b"\xfe\xff\xdd\xe0\0\0\0\0" if delimiter else b""
    return (oracle.PIXEL_DATA, el(oracle.PIXEL_DATA, "OB", b"", undefined=True) + items + tail)


# --- intact objects --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "syntax"),
    [(variant, syntax) for variant, syntaxes in mutate.VARIANTS.items() for syntax in syntaxes],
)
def test_every_base_object_in_every_syntax_it_is_made_in_is_clean(
    variant: str, syntax: str
) -> None:
    for seed in range(8):
        rng = random.Random(seed)  # noqa: S311 - test data
        base = mutate.make_base(variant, rng=rng, syntax=syntax, index=seed)
        assert defects(base.wire(), syntax, sop_class=base.sop_class, sop=base.sop_instance) == []


@pytest.mark.parametrize("syntax", [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE])
def test_a_minimal_data_set_is_clean_in_each_native_syntax(syntax: str) -> None:
    assert defects(dataset(syntax=syntax), syntax) == []


def test_controls_are_clean_and_cases_are_deterministic() -> None:
    first = list(mutate.cases(7, 150))
    assert first == list(mutate.cases(7, 150))
    assert first[:40] == list(mutate.cases(7, 40))  # a case does not depend on the count
    assert [c.dataset for c in first[:20]] != [c.dataset for c in mutate.cases(8, 20)]
    controls = [c for c in first if c.control]
    assert controls
    for case in controls:
        assert (
            defects(
                case.dataset, case.transfer_syntax, sop_class=case.sop_class, sop=case.sop_instance
            )
            == []
        )


def test_the_cases_cover_every_operator_and_every_category() -> None:
    seen_operators: set[str] = set()
    seen_categories: set[Category] = set()
    for case in mutate.cases(11, 400):
        seen_operators.update(case.operators)
        for d in oracle.inspect(
            case.dataset,
            transfer_syntax=case.transfer_syntax,
            request_sop_class=case.sop_class,
            request_sop_instance=case.sop_instance,
        ):
            seen_categories.add(d.category)
    assert seen_operators == {op.name for op in mutate.OPERATORS}
    assert seen_categories == set(Category)


# --- element headers and lengths ----------------------------------------------------------


def test_an_element_header_cut_short() -> None:
    assert_one(defects(dataset() + b"\x10\x00\x10"), Category.STRUCTURE, "element header cut short")
    long_header = el(0x00091000, "OB", b"").rstrip(b"\0")[:10]
    assert_one(defects(dataset() + long_header), Category.STRUCTURE, "cut short")


def test_a_length_that_runs_past_the_end() -> None:
    data = dataset() + el(0x00280010, "US", b"\x01\x00")[:6] + (100).to_bytes(2, "little") + b"\0\0"
    assert_one(
        defects(data),
        Category.STRUCTURE,
        "element (0028,0010) length 100 runs past the end of the data set at offset",
    )


def test_an_odd_length() -> None:
    data = dataset((0x00100010, el(0x00100010, "PN", b"ABC")))
    assert_one(defects(data), Category.STRUCTURE, "odd length 3")


def test_an_undefined_length_on_a_vr_that_may_not_have_one() -> None:
    data = dataset((0x0040A160, el(0x0040A160, "UT", b"", undefined=True) + b"ABCD"))
    assert_one(defects(data), Category.STRUCTURE, "undefined length, which VR UT may not have")
    implicit = dataset(
        (0x00280010, el(0x00280010, "US", b"", syntax=IMPLICIT_LE, undefined=True)),
        syntax=IMPLICIT_LE,
    )
    assert_one(defects(implicit, IMPLICIT_LE), Category.STRUCTURE, "which VR US may not have")


def test_explicit_vr_bytes_that_are_no_vr() -> None:
    data = dataset((0x00100010, b"\x10\x00\x10\x00ZZ\x04\x00ABCD"))
    assert_one(defects(data), Category.STRUCTURE, "explicit VR bytes b'ZZ' of element (0010,0010)")


def test_tags_out_of_order_and_a_duplicated_element() -> None:
    name, sex = el(0x00100010, "PN", b"AB"), el(0x00100040, "CS", b"F ")
    assert_one(defects(dataset() + sex + name), Category.STRUCTURE, "not in ascending order")
    study = el(0x0020000D, "UI", ui("1.2.3.5"))
    doubled = dataset().replace(study, study + study)
    assert_one(defects(doubled), Category.STRUCTURE, "(0020,000D) at offset")
    assert "appears twice" in defects(doubled)[0]


# --- sequences and items --------------------------------------------------------------------


def code_item() -> bytes:
    return el(0x00080100, "SH", b"70450 ")


def test_sequences_with_defined_and_undefined_lengths_are_clean() -> None:
    for defined in (True, False):
        for syntax in ENCODINGS:
            implicit, little = ENCODINGS[syntax]
            inner = element_bytes(0x00080100, "SH", b"70450 ", implicit=implicit, little=little)
            seq = sequence_bytes(
                0x00081032, [inner, inner], defined=defined, implicit=implicit, little=little
            )
            assert defects(dataset((0x00081032, seq), syntax=syntax), syntax) == []


def test_an_item_with_the_wrong_tag() -> None:
    seq = sequence_bytes(0x00081032, [code_item()], defined=True, implicit=False, little=True)
    broken = seq.replace(b"\xfe\xff\x00\xe0", b"\xfe\xff\x01\xe0")
    assert_one(defects(dataset((0x00081032, broken))), Category.STRUCTURE, "not (FFFE,E000)")


def test_missing_sequence_and_item_delimiters() -> None:
    seq = sequence_bytes(0x0040A730, [code_item()], defined=False, implicit=False, little=True)
    at_the_end = dataset((0x0040A730, seq[:-8]))
    assert_one(defects(at_the_end), Category.STRUCTURE, "no sequence delimiter")
    early = sequence_bytes(0x00081032, [code_item()], defined=False, implicit=False, little=True)
    # The next element is then read as the sequence's next item.
    followed = dataset((0x00081032, early[:-8]))
    assert_one(defects(followed), Category.STRUCTURE, "has tag (0020,000D), not (FFFE,E000)")
    no_item_end = seq.replace(b"\xfe\xff\x0d\xe0\0\0\0\0", b"")
    assert_one(
        defects(dataset((0x0040A730, no_item_end))),
        Category.STRUCTURE,
        "item has no item delimiter",
    )


def test_a_delimiter_with_a_length() -> None:
    seq = sequence_bytes(0x00081032, [code_item()], defined=False, implicit=False, little=True)
    bad = seq[:-4] + b"\x04\0\0\0"
    assert_one(defects(dataset((0x00081032, bad))), Category.STRUCTURE, "has length 4 (must be 0)")


def nested(depth: int, *, defined: bool) -> bytes:
    content = el(0x0040A160, "UT", b"FUZZ")
    for _ in range(depth):
        content = sequence_bytes(
            0x0040A730, [content], defined=defined, implicit=False, little=True
        )
    return content


@pytest.mark.parametrize("defined", [True, False])
def test_sixteen_levels_of_nesting_pass_and_seventeen_do_not(defined: bool) -> None:
    assert defects(dataset((0x0040A730, nested(16, defined=defined)))) == []
    assert_one(
        defects(dataset((0x0040A730, nested(17, defined=defined)))),
        Category.STRUCTURE,
        "nested 17 levels deep (more than 16)",
    )


def test_an_explicit_un_of_undefined_length_holds_an_implicit_sequence() -> None:
    inner = element_bytes(0x00080100, "SH", b"70450 ", implicit=True, little=True)
    body = item_bytes(inner, defined=False, little=True) + b"\xfe\xff\xdd\xe0\0\0\0\0"
    un = el(0x00091010, "UN", b"", undefined=True) + body
    creator = el(0x00090010, "LO", b"FUZZ")
    assert defects(dataset((0x00090010, creator), (0x00091010, un))) == []


# --- values ------------------------------------------------------------------------------------


def test_fixed_size_values_of_the_wrong_length() -> None:
    assert_one(
        defects(dataset((0x00280030, el(0x00280030, "UL", b"\1\0\0\0\2\0")))),
        Category.VALUE,
        "not a multiple of 4",
    )
    assert_one(
        defects(dataset((0x00189087, el(0x00189087, "FD", b"\0\0\0\0")))),
        Category.VALUE,
        "not a multiple of 8",
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (b"1.2.a4", "contains 'a'"),
        (b"1.02", "leading zero"),
        (b"1..2", "empty component"),
        (b".1.2", "empty component"),
        (b"1.22\0\0", "contains NUL"),
        (b"1.2.3 ", "contains ' '"),
        (b"1.2\x003.4\0", "contains NUL"),
        (b"1." + b"2" * 64, "66 characters (more than 64)"),
    ],
)
def test_bad_uid_values(value: bytes, fragment: str) -> None:
    data = dataset((0x00081150, el(0x00081150, "UI", value)))
    assert_one(defects(data), Category.VALUE, fragment)


def test_good_uid_values_with_and_without_their_pad() -> None:
    for value in (b"1.2.0.30", b"1.2.0.3", b"0.0"):
        assert (
            defects(dataset((0x00081150, el(0x00081150, "UI", value + b"\0" * (len(value) % 2)))))
            == []
        )


def test_identifying_uids_missing_empty_or_doubled() -> None:
    without_series = b"".join(el(t, "UI", ui(u)) for t, u in UIDS.items() if t != 0x0020000E)
    assert_one(defects(without_series), Category.VALUE, "SeriesInstanceUID (0020,000E) is missing")
    empty_study = dataset().replace(el(0x0020000D, "UI", ui("1.2.3.5")), el(0x0020000D, "UI", b""))
    assert_one(defects(empty_study), Category.VALUE, "StudyInstanceUID (0020,000D) is empty")
    two = dataset().replace(
        el(0x0020000D, "UI", ui("1.2.3.5")), el(0x0020000D, "UI", b"1.2.3.5\\1.2.3.7\0")
    )
    assert_one(defects(two), Category.VALUE, "has 2 values (exactly one is required)")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (b"2147483648", "outside [-2^31, 2^31-1]"),
        (b"-2147483649 ", "outside"),
        (b"99999999999 ", "outside"),
        (b"12a ", "not an integer"),
        (b"1.5 ", "not an integer"),
        (b"7\0", "not an integer"),
    ],
)
def test_bad_integer_strings(value: bytes, fragment: str) -> None:
    assert_one(
        defects(dataset((0x00200013, el(0x00200013, "IS", value)))), Category.VALUE, fragment
    )


def test_integer_strings_at_the_edges_pass_and_no_frames_do_not() -> None:
    for value in (b"2147483647", b"-2147483648 ", b" 12 ", b"1\\2 "):
        assert defects(dataset((0x00200013, el(0x00200013, "IS", value)))) == []
    assert_one(
        defects(dataset((0x00280008, el(0x00280008, "IS", b"0 ")))),
        Category.VALUE,
        "NumberOfFrames",
    )


@pytest.mark.parametrize(
    ("charset", "name", "clean"),
    [
        (None, b"MULLER^JORG" + b" ", True),
        (None, "MÜLLER^JÖRG".encode("latin-1") + b" ", False),
        (b"ISO_IR 192", "MÜLLER^JÖRG".encode("latin-1") + b" ", False),
        (b"ISO_IR 192", "MÜLLER^JÖRG".encode() + b" ", True),
        (b"ISO_IR 100", "MÜLLER^JÖRG".encode("latin-1") + b" ", True),
        (b"ISO_IR 6", "MÜLLER^JÖRG".encode("latin-1") + b" ", False),
        (b"\\ISO 2022 IR 87", b"\x1b$B;3ED\x1b(B", True),  # code extensions: not judged
    ],
)
def test_text_decodes_under_the_declared_character_set(
    charset: bytes | None, name: bytes, clean: bool
) -> None:
    parts = [(0x00100010, el(0x00100010, "PN", name + b" " * (len(name) % 2)))]
    if charset is not None:
        parts.append((0x00080005, el(0x00080005, "CS", charset + b" " * (len(charset) % 2))))
    found = defects(dataset(*parts))
    if clean:
        assert found == []
    else:
        assert_one(found, Category.VALUE, "PN value of (0010,0010)")


def test_code_strings_are_ascii_whatever_the_character_set() -> None:
    data = dataset(
        (0x00080005, el(0x00080005, "CS", b"ISO_IR 192")),
        (0x00080060, el(0x00080060, "CS", "CTÜ".encode())),
    )
    assert_one(defects(data), Category.VALUE, "CS value of (0008,0060) at offset")


# --- pixel data ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "columns", "bits", "frames", "length", "clean"),
    [
        (2, 2, 16, None, 8, True),
        (2, 2, 16, 3, 24, True),
        (3, 3, 8, None, 10, True),  # 9 bytes, padded to even
        (3, 3, 1, None, 2, True),  # 9 bits packed
        (2, 2, 16, None, 6, False),
        (2, 2, 16, 2, 8, False),
        (3, 3, 8, None, 9, False),  # odd, and not the padded size
    ],
)
def test_native_pixel_data_is_rows_columns_bits_and_frames(
    rows: int, columns: int, bits: int, frames: int | None, length: int, clean: bool
) -> None:
    pixels = (oracle.PIXEL_DATA, el(oracle.PIXEL_DATA, "OW", b"\0" * length))
    found = defects(dataset(*pixel_module(rows, columns, bits, frames), pixels))
    if clean:
        assert found == []
    else:
        assert oracle.category_of(found[-1]) == Category.PIXELS, found


def test_empty_or_unsizable_native_pixel_data() -> None:
    empty = (oracle.PIXEL_DATA, el(oracle.PIXEL_DATA, "OW", b""))
    assert_one(defects(dataset(*pixel_module(), empty)), Category.PIXELS, "is empty")
    some = (oracle.PIXEL_DATA, el(oracle.PIXEL_DATA, "OW", b"\0" * 8))
    no_rows = [p for p in pixel_module() if p[0] != 0x00280010]
    assert_one(defects(dataset(*no_rows, some)), Category.PIXELS, "Rows missing or zero")


def jpeg() -> bytes:
    return b"\xff\xd8\xff\xe0\0\0\xff\xd9"


def test_encapsulated_pixel_data_well_formed_in_each_family() -> None:
    module = pixel_module(2, 2, 8)
    assert defects(dataset(*module, encapsulated(jpeg())), JPEG_BASELINE) == []
    table = (0).to_bytes(4, "little") + (16).to_bytes(4, "little")
    assert (
        defects(dataset(*module, encapsulated(jpeg(), jpeg(), offset_table=table)), JPEG_BASELINE)
        == []
    )
    assert defects(dataset(*module, encapsulated(b"\xff\x4f\xff\x51\0\0")), JPEG2000) == []
    assert defects(dataset(*module, encapsulated(b"\0\0\0\x0cjP  \r\n\x87\n")), JPEG2000) == []
    frame = mutate.rle_frame(bytes(range(8)), rows=2, columns=2)
    assert defects(dataset(*pixel_module(2, 2, 16), encapsulated(frame)), RLE_LOSSLESS) == []


@pytest.mark.parametrize(
    ("syntax", "pixels", "fragment"),
    [
        (JPEG_BASELINE, encapsulated(b"\x00\x01\x02\x03"), "not a JPEG start of image"),
        (JPEG2000, encapsulated(jpeg()), "neither a JPEG 2000 codestream"),
        (JPEG_BASELINE, encapsulated(), "no fragment after its basic offset table"),
        (JPEG_BASELINE, encapsulated(jpeg(), offset_table=b"\0" * 6), "not a multiple of 4"),
        (JPEG_BASELINE, encapsulated(jpeg(), delimiter=False), "no sequence delimiter"),
        (
            JPEG_BASELINE,
            (oracle.PIXEL_DATA, el(oracle.PIXEL_DATA, "OB", jpeg())),
            "has a defined length",
        ),
        (EXPLICIT_LE, encapsulated(jpeg()), "undefined length in the native transfer syntax"),
        (RLE_LOSSLESS, encapsulated(b"\0" * 64), "declares 0 segments"),
        (
            RLE_LOSSLESS,
            encapsulated(b"\x02\0\0\0" + b"\x40\0\0\0" + b"\x30\0\0\0" + b"\0" * 60),
            "do not increase",
        ),
        (RLE_LOSSLESS, encapsulated(b"\x01\0\0\0\x40\0\0\0"), "shorter than its 64-byte header"),
    ],
)
def test_encapsulated_pixel_data_defects(
    syntax: str, pixels: tuple[int, bytes], fragment: str
) -> None:
    found = defects(dataset(*pixel_module(2, 2, 16), pixels), syntax)
    assert any(oracle.category_of(d) == Category.PIXELS and fragment in d for d in found), found


# --- deflate -------------------------------------------------------------------------------------


def test_deflated_data_sets() -> None:
    plain = dataset()
    packed = mutate.deflate(plain)
    assert defects(packed, DEFLATED_LE) == []
    assert_one(
        defects(packed[: len(packed) // 2], DEFLATED_LE),
        Category.STRUCTURE,
        "ends inside its deflate stream",
    )
    assert_one(
        defects(b"\xff\xff\xff\xff" * 8, DEFLATED_LE), Category.STRUCTURE, "does not inflate"
    )
    assert_one(
        defects(packed + b"JUNK", DEFLATED_LE),
        Category.STRUCTURE,
        "follow the end of the deflate stream",
    )
    bomb = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    big = bomb.compress(plain + b"\0" * (1 << 20)) + bomb.flush()
    found = oracle.walk(big, transfer_syntax=DEFLATED_LE, inflate_limit=1 << 16).defects
    assert found and "inflates beyond 65536 bytes" in found[0].message


# --- the request --------------------------------------------------------------------------------


def test_the_request_against_the_data_set() -> None:
    data = dataset()
    assert defects(data, sop=SOP + "\0") == []  # one pad is not a difference
    assert_one(defects(data, sop_class=mutate.BASIC_TEXT_SR), Category.REQUEST, "SOPClassUID")
    assert_one(defects(data, sop="1.2.3.999"), Category.REQUEST, "SOPInstanceUID '1.2.3.4' differs")


@pytest.mark.parametrize(
    ("uid", "fragment"), [("", "is empty"), ("   ", "is blank"), ("1." * 33, "66 characters")]
)
def test_a_bad_affected_sop_instance_uid_in_the_request(uid: str, fragment: str) -> None:
    found = oracle.inspect(
        dataset(), transfer_syntax=EXPLICIT_LE, request_sop_class=CT, request_sop_instance=uid
    )
    assert found[0].category == Category.REQUEST and fragment in found[0].message, found


def test_an_unknown_transfer_syntax() -> None:
    assert_one(defects(dataset(), "1.2.3.4.5"), Category.STRUCTURE, "not one known")
