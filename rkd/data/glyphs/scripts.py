"""Which fonts draw which script: the table the glyph rasteriser reads.

A :class:`Script` names the Noto font files that draw it (Debian's ``fonts-noto-core``
installs them in ``/usr/share/fonts/truetype/noto``) and the code point ranges its
characters are taken from. A character is used only when it is a letter (Unicode
category L*), lies in those ranges, is drawn by *every* font of the script (no font
falls back to its .notdef box), has ink, and does not look exactly like a character
already taken (see :func:`rkd.data.glyphs.fonts.script_characters`). Which script plays
which paper dataset's role is in :mod:`rkd.data.glyphs.roles`.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Script", "SCRIPTS"]


@dataclass(frozen=True)
class Script:
    """A writing system and the fonts that draw it.

    Attributes:
        name: the script's name (also its key in :data:`SCRIPTS`).
        fonts: font file names, looked up in the fonts folder; renders cycle through them.
        ranges: inclusive ``(first, last)`` code point ranges its characters come from.
    """

    name: str
    fonts: tuple[str, ...]
    ranges: tuple[tuple[int, int], ...]


def _family(stem: str, serif: bool = True, bold: bool = True) -> tuple[str, ...]:
    """``NotoSans<stem>`` Regular (+ Bold), then ``NotoSerif<stem>`` Regular (+ Bold)."""
    weights = ("Regular", "Bold") if bold else ("Regular",)
    files = [f"NotoSans{stem}-{w}.ttf" for w in weights]
    if serif:
        files += [f"NotoSerif{stem}-{w}.ttf" for w in weights]
    return tuple(files)


def _single(stem: str) -> tuple[str, ...]:
    return (f"NotoSans{stem}-Regular.ttf",)


_TABLE: tuple[Script, ...] = (
    # ---- the pretraining corpus: large living scripts, one regular font each (see PRETRAIN_SCRIPTS)
    Script("Arabic", _single("Arabic"), ((0x0620, 0x06FF), (0x0750, 0x077F))),
    Script("Armenian", _single("Armenian"), ((0x0530, 0x058F),)),
    Script("Bengali", _single("Bengali"), ((0x0980, 0x09FF),)),
    Script("Devanagari", _single("Devanagari"), ((0x0900, 0x097F),)),
    Script("Georgian", _single("Georgian"), ((0x10A0, 0x10FF), (0x1C90, 0x1CBF), (0x2D00, 0x2D2F))),
    Script("Gujarati", _single("Gujarati"), ((0x0A80, 0x0AFF),)),
    Script("Gurmukhi", _single("Gurmukhi"), ((0x0A00, 0x0A7F),)),
    Script("Hebrew", _single("Hebrew"), ((0x05D0, 0x05FF),)),
    Script("Kannada", _single("Kannada"), ((0x0C80, 0x0CFF),)),
    Script("Khmer", _single("Khmer"), ((0x1780, 0x17DF),)),
    Script("Lao", _single("Lao"), ((0x0E80, 0x0EDF),)),
    Script("Malayalam", _single("Malayalam"), ((0x0D00, 0x0D7F),)),
    Script("Myanmar", _single("Myanmar"), ((0x1000, 0x109F), (0xA9E0, 0xA9FF), (0xAA60, 0xAA7F))),
    Script("Oriya", _single("Oriya"), ((0x0B00, 0x0B7F),)),
    Script("Sinhala", _single("Sinhala"), ((0x0D80, 0x0DFF),)),
    Script("Tamil", _single("Tamil"), ((0x0B80, 0x0BFF),)),
    Script("Telugu", _single("Telugu"), ((0x0C00, 0x0C7F),)),
    Script("Thai", _single("Thai"), ((0x0E00, 0x0E7F),)),
    Script("Tibetan", ("NotoSerifTibetan-Regular.ttf",), ((0x0F00, 0x0FFF),)),
    # ---- the fine-grained retrieval sets: syllabaries whose characters differ by small marks
    Script("Ethiopic", _family("Ethiopic"), ((0x1200, 0x139F), (0x2D80, 0x2DDF), (0xAB00, 0xAB2F))),
    Script("CanadianAboriginal", _family("CanadianAboriginal", serif=False), ((0x1400, 0x167F), (0x18B0, 0x18FF))),
    # ---- many classes, few images each
    Script("Yi", _single("Yi"), ((0xA000, 0xA48F),)),
    # ---- classification: CIFAR-100's 20 superclasses are 20 scripts of five characters
    Script("Adlam", _family("Adlam", serif=False), ((0x1E900, 0x1E94F),)),
    Script("Balinese", _family("Balinese", serif=False), ((0x1B00, 0x1B7F),)),
    Script("Cham", _family("Cham", serif=False), ((0xAA00, 0xAA5F),)),
    Script("Cherokee", _family("Cherokee", serif=False), ((0x13A0, 0x13FF), (0xAB70, 0xABBF))),
    Script("Grantha", ("NotoSansGrantha-Regular.ttf", "NotoSerifGrantha-Regular.ttf"), ((0x11300, 0x1137F),)),
    Script("HanifiRohingya", _family("HanifiRohingya", serif=False), ((0x10D00, 0x10D3F),)),
    Script("Javanese", _family("Javanese", serif=False), ((0xA980, 0xA9DF),)),
    Script("KayahLi", _family("KayahLi", serif=False), ((0xA900, 0xA92F),)),
    Script("Khojki", ("NotoSansKhojki-Regular.ttf", "NotoSerifKhojki-Regular.ttf", "NotoSerifKhojki-Bold.ttf"),
           ((0x11200, 0x1124F),)),
    Script("Lisu", _family("Lisu", serif=False), ((0xA4D0, 0xA4FF),)),
    Script("Medefaidrin", _family("Medefaidrin", serif=False), ((0x16E40, 0x16E9F),)),
    Script("MeeteiMayek", _family("MeeteiMayek", serif=False), ((0xAAE0, 0xAAFF), (0xABC0, 0xABFF))),
    Script("NyiakengPuachueHmong", ("NotoSerifNyiakengPuachueHmong-Regular.ttf",
                                    "NotoSerifNyiakengPuachueHmong-Bold.ttf"), ((0x1E100, 0x1E14F),)),
    Script("OlChiki", _family("OlChiki", serif=False), ((0x1C50, 0x1C7F),)),
    Script("SoraSompeng", _family("SoraSompeng", serif=False), ((0x110D0, 0x110FF),)),
    Script("Sundanese", _family("Sundanese", serif=False), ((0x1B80, 0x1BBF), (0x1CC0, 0x1CCF))),
    Script("TaiTham", _family("TaiTham", serif=False), ((0x1A20, 0x1AAF),)),
    Script("Thaana", _family("Thaana", serif=False), ((0x0780, 0x07BF),)),
    Script("Yezidi", ("NotoSerifYezidi-Regular.ttf", "NotoSerifYezidi-Bold.ttf"), ((0x10E80, 0x10EBF),)),
    Script("Osage", _single("Osage"), ((0x104B0, 0x104FF),)),
    # ---- classification: Tiny ImageNet's 200 classes, ten scripts of twenty characters
    Script("Bamum", _family("Bamum", serif=False), ((0xA6A0, 0xA6FF), (0x16800, 0x16A3F))),
    Script("Vai", _single("Vai"), ((0xA500, 0xA63F),)),
    Script("MendeKikakui", _single("MendeKikakui"), ((0x1E800, 0x1E8DF),)),
    Script("LinearA", _single("LinearA"), ((0x10600, 0x1077F),)),
    Script("LinearB", _single("LinearB"), ((0x10000, 0x100FF),)),
    Script("Nushu", _single("Nushu"), ((0x1B170, 0x1B2FF),)),
    Script("Duployan", _single("Duployan"), ((0x1BC00, 0x1BC9F),)),
    Script("Mongolian", _single("Mongolian"), ((0x1820, 0x18AF),)),
    Script("Coptic", _single("Coptic"), ((0x2C80, 0x2CFF),)),
    Script("Glagolitic", _single("Glagolitic"), ((0x2C00, 0x2C5F),)),
    # ---- few-shot, miniImageNet: pictographs (Gardiner's signs: people, animals, plants, objects)
    Script("EgyptianHieroglyphs", _single("EgyptianHieroglyphs"), ((0x13000, 0x1342F),)),
    # ---- few-shot, Omniglot: fifty small alphabets, one font each (30 background, 20 evaluation)
    *(Script(name, _single(name), ranges) for name, ranges in (
        ("Avestan", ((0x10B00, 0x10B3F),)),
        ("Batak", ((0x1BC0, 0x1BFF),)),
        ("Bhaiksuki", ((0x11C00, 0x11C6F),)),
        ("Brahmi", ((0x11000, 0x1107F),)),
        ("Buginese", ((0x1A00, 0x1A1F),)),
        ("Carian", ((0x102A0, 0x102DF),)),
        ("CaucasianAlbanian", ((0x10530, 0x1056F),)),
        ("Chakma", ((0x11100, 0x1114F),)),
        ("Cypriot", ((0x10800, 0x1083F),)),
        ("Deseret", ((0x10400, 0x1044F),)),
        ("Elbasan", ((0x10500, 0x1052F),)),
        ("Gothic", ((0x10330, 0x1034F),)),
        ("GunjalaGondi", ((0x11D60, 0x11DAF),)),
        ("ImperialAramaic", ((0x10840, 0x1085F),)),
        ("Kaithi", ((0x11080, 0x110CF),)),
        ("Kharoshthi", ((0x10A00, 0x10A5F),)),
        ("Khudawadi", ((0x112B0, 0x112FF),)),
        ("Lepcha", ((0x1C00, 0x1C4F),)),
        ("Limbu", ((0x1900, 0x194F),)),
        ("Lycian", ((0x10280, 0x1029F),)),
        ("Mahajani", ((0x11150, 0x1117F),)),
        ("Mandaic", ((0x0840, 0x085F),)),
        ("Manichaean", ((0x10AC0, 0x10AFF),)),
        ("Marchen", ((0x11C70, 0x11CBF),)),
        ("MasaramGondi", ((0x11D00, 0x11D5F),)),
        ("Meroitic", ((0x10980, 0x109FF),)),
        ("Modi", ((0x11600, 0x1165F),)),
        ("Multani", ((0x11280, 0x112AF),)),
        ("NKo", ((0x07C0, 0x07FF),)),
        ("Nabataean", ((0x10880, 0x108AF),)),
        ("Newa", ((0x11400, 0x1147F),)),
        ("Ogham", ((0x1680, 0x169F),)),
        ("OldItalic", ((0x10300, 0x1032F),)),
        ("OldPermic", ((0x10350, 0x1037F),)),
        ("OldPersian", ((0x103A0, 0x103DF),)),
        ("OldTurkic", ((0x10C00, 0x10C4F),)),
        ("Osmanya", ((0x10480, 0x104AF),)),
        ("PahawhHmong", ((0x16B00, 0x16B8F),)),
        ("PauCinHau", ((0x11AC0, 0x11AFF),)),
        ("PhagsPa", ((0xA840, 0xA87F),)),
        ("Rejang", ((0xA930, 0xA95F),)),
        ("Runic", ((0x16A0, 0x16FF),)),
        ("Samaritan", ((0x0800, 0x083F),)),
        ("Saurashtra", ((0xA880, 0xA8DF),)),
        ("Sharada", ((0x11180, 0x111DF),)),
        ("Shavian", ((0x10450, 0x1047F),)),
        ("Siddham", ((0x11580, 0x115FF),)),
        ("Soyombo", ((0x11A50, 0x11AAF),)),
        ("Takri", ((0x11680, 0x116CF),)),
        ("Tifinagh", ((0x2D30, 0x2D7F),)),
    )),
)

#: script name -> :class:`Script`
SCRIPTS: dict[str, Script] = {script.name: script for script in _TABLE}
if len(SCRIPTS) != len(_TABLE):  # a typo that names a script twice would silently drop one
    raise RuntimeError("rkd.data.glyphs.scripts: a script is listed twice")
