"""HiPS properties files: parsing, legacy fallbacks and errors that name the culprit."""

from __future__ import annotations

import pytest

from hipsml.errors import PropertiesError
from hipsml.hips import HipsProperties, parse_properties


def typed(text: str) -> HipsProperties:
    return HipsProperties.from_dict(parse_properties(text, source="props.txt"), source="props.txt")


def test_parse_keeps_inner_spaces_skips_comments_and_keeps_first_repeat():
    text = (
        "# HiPS properties\n"
        "\n"
        "creator_did          = ivo://CDS/P/Fermi/color\n"
        "obs_title    =   Fermi  Color HEALPix survey  \r\n"
        "   # indented comment\n"
        "bib_reference        = 2015PASJ...67...50D\n"
        "bib_reference        = 2015PASJ...67...51T\n"
        'hipsgen_params       = out=2MASS6X_H "pixelCut=-5.716 152.2" UPDATE\n'
        "empty_value =\n"
    )
    props = parse_properties(text, source="x")
    assert props["creator_did"] == "ivo://CDS/P/Fermi/color"
    assert props["obs_title"] == "Fermi  Color HEALPix survey"
    assert props["bib_reference"] == "2015PASJ...67...50D"
    assert props["hipsgen_params"] == 'out=2MASS6X_H "pixelCut=-5.716 152.2" UPDATE'
    assert props["empty_value"] == ""
    assert len(props) == 5


def test_parse_bytes_utf8_latin1_and_bom():
    assert parse_properties("\ufeffobs_title = Café\n".encode(), source="x") == {"obs_title": "Café"}
    assert parse_properties("obs_title = Café\n".encode("latin-1"), source="x") == {"obs_title": "Café"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("hips_order = 3\nthis line has no equals sign\n", "line 2"),
        ("# only a comment\n\n", "empty"),
        ("", "empty"),
        ("= value without key\n", "line 1"),
        ("hips order = 3\n", "line 1"),
    ],
)
def test_parse_errors_name_source_and_line(text, fragment):
    with pytest.raises(PropertiesError) as info:
        parse_properties(text, source="/data/hips/properties")
    assert "/data/hips/properties" in str(info.value)
    assert fragment in str(info.value)


def test_binary_file_is_rejected():
    with pytest.raises(PropertiesError, match=r"remote/properties, line 1: binary"):
        parse_properties(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", source="remote/properties")


def test_hips_1_0_fields():
    p = typed(
        "hips_order = 9\nhips_order_min = 2\nhips_frame = equatorial\nhips_tile_width = 256\n"
        "hips_tile_format = png jpeg fits\nhips_pixel_bitpix = -32\nhips_pixel_cut = -5.716 152.2\n"
        "dataproduct_type = image\n"
    )
    assert (p.order, p.order_min, p.frame, p.tile_width) == (9, 2, "icrs", 256)
    assert p.formats == ("png", "jpeg", "fits")
    assert p.bitpix == -32
    assert p.pixel_cut == (-5.716, 152.2)
    assert p.channels == 1
    assert p.dataproduct_type == "image"


def test_defaults():
    p = typed("hips_order = 3\nhips_frame = galactic\nhips_tile_format = jpeg\n")
    assert (p.order_min, p.tile_width, p.bitpix, p.pixel_cut) == (0, 512, None, None)


@pytest.mark.parametrize(
    ("line", "frame"),
    [
        ("hips_frame = equatorial", "icrs"),
        ("hips_frame = ICRS", "icrs"),
        ("hips_frame = galactic", "galactic"),
        ("hips_frame = ecliptic", "ecliptic"),
        ("coordsys = C", "icrs"),
        ("coordsys = G", "galactic"),
        ("coordsys = E", "ecliptic"),
    ],
)
def test_frames(line, frame):
    assert typed(f"hips_order = 3\n{line}\nformat = jpeg\n").frame == frame


def test_hips_frame_wins_over_legacy_coordsys():
    assert typed("hips_order = 3\ncoordsys = C\nhips_frame = galactic\nformat = jpeg\n").frame == "galactic"


@pytest.mark.parametrize("line", ["hips_frame = mars", "coordsys = X"])
def test_unknown_frame_is_an_error_naming_the_field(line):
    key = line.split()[0]
    with pytest.raises(PropertiesError, match=rf"props.txt: field {key}"):
        typed(f"hips_order = 3\n{line}\n")


def test_legacy_fallbacks():
    p = typed("maxOrder = 5\ncoordsys = G\nformat = jpg fits\npixelCut = 1 2\nisColor = true\n")
    assert (p.order, p.frame, p.formats, p.pixel_cut, p.channels) == (5, "galactic", ("jpeg", "fits"), (1.0, 2.0), 3)


@pytest.mark.parametrize(
    "lines",
    ["dataproduct_subtype = color", "isColored = true", "isColor = True"],
)
def test_colour_surveys_have_three_channels(lines):
    assert typed(f"hips_order = 3\nhips_frame = equatorial\nhips_tile_format = png jpeg\n{lines}\n").channels == 3


def test_jpg_is_normalised_and_unknown_formats_dropped():
    assert typed("hips_order = 3\nhips_frame = galactic\nhips_tile_format = JPG tsv png\n").formats == ("jpeg", "png")


def test_no_image_format_is_an_error():
    with pytest.raises(PropertiesError, match="hips_tile_format"):
        typed("hips_order = 3\nhips_frame = galactic\nhips_tile_format = tsv\n")


def test_missing_order_is_an_error():
    with pytest.raises(PropertiesError, match=r"props.txt: required field hips_order \(or legacy maxOrder\)"):
        typed("hips_frame = galactic\nhips_tile_format = jpeg\n")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("hips_order = three", "hips_order"),
        ("hips_tile_width = 512px", "hips_tile_width"),
        ("hips_tile_width = 300", "hips_tile_width"),
        ("hips_order_min = 7", "hips_order_min"),
        ("hips_pixel_cut = 1", "hips_pixel_cut"),
        ("hips_pixel_cut = low high", "hips_pixel_cut"),
        ("hips_pixel_bitpix = 12", "hips_pixel_bitpix"),
    ],
)
def test_bad_values_name_the_field(line, field):
    with pytest.raises(PropertiesError) as info:
        typed(f"{line}\nhips_order = 3\nhips_frame = galactic\nhips_tile_format = fits\n")
    assert field in str(info.value)
    assert "props.txt" in str(info.value)


def test_real_sample_properties(samples_dir):
    def load(name: str) -> HipsProperties:
        path = samples_dir / name / "properties"
        return HipsProperties.from_dict(parse_properties(path.read_bytes(), source=str(path)), source=str(path))

    planck = load("Planck-HFI143")
    assert (planck.frame, planck.order, planck.tile_width, planck.formats, planck.channels) == (
        "galactic",
        3,
        256,
        ("jpeg", "fits"),
        1,
    )
    twomass = load("2MASS6XH")
    assert (twomass.frame, twomass.order, twomass.formats, twomass.bitpix) == ("icrs", 9, ("png", "jpeg", "fits"), -32)
    assert twomass.pixel_cut == (-5.716, 152.2)
    fermi = load("FermiColor")
    assert (fermi.formats, fermi.channels, fermi.tile_width) == (("jpeg",), 3, 512)
    akari = load("AKARI-FIS")
    assert (akari.order, akari.formats, akari.channels) == (5, ("png", "jpeg"), 3)
