"""Which scripts play which paper dataset's role in the glyph world.

No script serves two roles, so the pretraining corpus (ImageNet's role) never shares a
character, or even a script, with a dataset used after it. The datasets that draw these
scripts and split them as the paper's datasets are split are in
:mod:`rkd.data.glyphs.datasets`.
"""
from __future__ import annotations

from rkd.data.glyphs.raster import Augmentation

__all__ = ["PRETRAIN_SCRIPTS", "CUB_SCRIPT", "CARS_SCRIPT", "SOP_SCRIPT", "CIFAR100_SCRIPTS",
           "TINY_IMAGENET_SCRIPTS", "MINI_IMAGENET_SCRIPT", "OMNIGLOT_BACKGROUND", "OMNIGLOT_EVALUATION",
           "OMNIGLOT_VAL", "PRETRAIN_AUGMENTATION"]

#: ImageNet's role: the corpus the trunks are pretrained on. One regular font per script
#: and mild augmentation (:data:`PRETRAIN_AUGMENTATION`): the "canonical
#: photographs" of the glyph world, against which the retrieval sets' many fonts, slants
#: and stroke widths are a domain the pretrained trunk has not seen.
PRETRAIN_SCRIPTS = ("Arabic", "Armenian", "Bengali", "Devanagari", "Georgian", "Gujarati", "Gurmukhi", "Hebrew",
                    "Kannada", "Khmer", "Lao", "Malayalam", "Myanmar", "Oriya", "Sinhala", "Tamil", "Telugu", "Thai",
                    "Tibetan")
#: CUB-200-2011's role (fine-grained retrieval)
CUB_SCRIPT = "Ethiopic"
#: Cars196's role (fine-grained retrieval)
CARS_SCRIPT = "CanadianAboriginal"
#: Stanford Online Products' role (many classes, few images each)
SOP_SCRIPT = "Yi"
#: CIFAR-100's role: 20 scripts (its 20 superclasses), 5 characters each
CIFAR100_SCRIPTS = ("Adlam", "Balinese", "Cham", "Cherokee", "Grantha", "HanifiRohingya", "Javanese", "KayahLi",
                    "Khojki", "Lisu", "Medefaidrin", "MeeteiMayek", "NyiakengPuachueHmong", "OlChiki", "SoraSompeng",
                    "Sundanese", "TaiTham", "Thaana", "Yezidi", "Osage")
#: Tiny ImageNet's role: 10 scripts, 20 characters each
TINY_IMAGENET_SCRIPTS = ("Bamum", "Vai", "MendeKikakui", "LinearA", "LinearB", "Nushu", "Duployan", "Mongolian",
                         "Coptic", "Glagolitic")
#: miniImageNet's role: one script of pictographs, its classes split 64 / 16 / 20 at random
MINI_IMAGENET_SCRIPT = "EgyptianHieroglyphs"
#: Omniglot's role: background alphabets (training) ...
OMNIGLOT_BACKGROUND = ("Avestan", "Batak", "Bhaiksuki", "Brahmi", "Buginese", "Carian", "CaucasianAlbanian",
                       "Chakma", "Cypriot", "Deseret", "Elbasan", "Gothic", "GunjalaGondi", "ImperialAramaic",
                       "Kaithi", "Kharoshthi", "Khudawadi", "Lepcha", "Limbu", "Lycian", "Mahajani", "Mandaic",
                       "Manichaean", "Marchen", "MasaramGondi", "Meroitic", "Modi", "Multani", "NKo", "Nabataean")
#: ... and evaluation alphabets (testing), disjoint from the background ones
OMNIGLOT_EVALUATION = ("Newa", "Ogham", "OldItalic", "OldPermic", "OldPersian", "OldTurkic", "Osmanya",
                       "PahawhHmong", "PauCinHau", "PhagsPa", "Rejang", "Runic", "Samaritan", "Saurashtra",
                       "Sharada", "Shavian", "Siddham", "Soyombo", "Takri", "Tifinagh")
#: the background alphabets held out as Omniglot's validation split (as Vinyals et al. hold out five)
OMNIGLOT_VAL = ("Bhaiksuki", "Chakma", "Deseret", "Lepcha", "Nabataean")

#: the pretraining corpus's augmentation: the downstream sets' geometry (rotation up to
#: 15 degrees, slant, stretch), but one stroke width, full ink and little noise; scale and
#: shift as everywhere. The downstream sets' stroke widths and faint ink (and their several
#: fonts) are what fine-tuning must learn. With this corpus the two stand-in trunks, each
#: trained until it had all but stopped improving, are 5.5 points apart in top-1 (ResNet50
#: and ResNet18 on ImageNet: about 6); with upright renders only, both end near 96-98% and
#: 2-3 points apart
PRETRAIN_AUGMENTATION = Augmentation(rotation_decidegrees=150, shear_permille=250, stretch_permille=150,
                                     strokes=(0,), ink=(255, 255), noise=8)
