"""Verbs in policy patterns: `<<verb:...>>` matches a Korean stem or an English verb in every form."""

from __future__ import annotations

import re

import pytest

from guardrails.verbs import StemError, forms, verb_pattern


@pytest.mark.parametrize(
    ("stem", "words", "others"),
    [
        # A vowel stem: ㄴ/ㄹ/ㅁ/ㅂ fuse into its last syllable, 어 contracts (리+어 -> 려).
        ("때리", ["때리다", "때려서", "때렸어", "때릴까", "때린", "때림", "때립니다", "때리어"], ["때문", "때로"]),
        ("죽이", ["죽이고", "죽여", "죽였다", "죽일", "죽인", "죽임", "죽입니다"], ["죽음", "죽도록"]),
        ("가두", ["가두다", "가둬", "가뒀다", "가둘", "가둔", "가둡니다"], ["가득"]),
        ("보", ["보다", "봐", "봤어", "볼래", "본", "봅시다"], ["버스"]),
        ("되", ["되나요", "돼", "됐다", "될까", "된", "됩니다"], ["도"]),
        ("보내", ["보내", "보냈어", "보낼", "보낸", "보냅니다"], ["보너스"]),
        ("공격하", ["공격하다", "공격해", "공격했어", "공격할", "공격한", "공격함", "공격합니다"], ["공격적"]),
        # ㅡ drops before 어/아, which is 아 after a bright vowel.
        ("쓰", ["쓰다", "써", "썼다", "쓸", "쓴", "씁니다"], ["싸다"]),
        ("아프", ["아프다", "아파", "아팠어", "아플", "아픈"], ["아빠"]),
        # 르-irregular: the syllable before 르 takes a ㄹ (찌르 -> 찔러, 자르 -> 잘라).
        ("찌르", ["찌르다", "찔러", "찔렀다", "찌를", "찌른", "찌릅니다"], ["찌개"]),
        ("자르", ["자르고", "잘라", "잘랐어", "자를", "자른"], ["자리"]),
        # ㄹ-final: the ㄹ drops before ㄴ, ㅂ, ㅅ and fuses with ㅁ.
        ("만들", ["만들다", "만들어", "만들었다", "만드는", "만든", "만듭니다", "만드세요", "만듦"], ["만두"]),
        # Other consonant-final stems keep the stem in every form.
        ("밟", ["밟다", "밟아", "밟았어", "밟을", "밟은"], ["발"]),
        # The part before the last syllable may hold pattern syntax.
        ("찍어 ?버리", ["찍어버려", "찍어 버렸어", "찍어버릴"], ["찍어봐"]),
        # English: -s, -ed, -ing with e dropped, y to i and a doubled consonant; irregular pasts.
        ("smother", ["smother", "smothers", "smothered", "smothering"], ["smooth"]),
        ("strangle", ["strangles", "strangled", "strangling"], ["strange"]),
        ("stab", ["stabs", "stabbed", "stabbing"], ["stable"]),
        ("gas", ["gases", "gassed", "gassing"], ["gasket"]),
        ("bury", ["buries", "buried", "burying"], ["burn"]),
        ("shoot", ["shoots", "shooting", "shot"], ["shore"]),
        ("beat up", ["beat up", "beating up", "beaten up"], ["beat it"]),
        ("run over", ["ran over", "running over", "runs over"], ["run out"]),
    ],
)
def test_a_stem_matches_its_conjugated_forms(stem: str, words: list[str], others: list[str]) -> None:
    # What follows the verb is the pattern's to say: Korean endings run on, an English word ends.
    pattern = re.compile(verb_pattern(stem) + (r"\b" if stem.isascii() else ""))
    assert [w for w in words if not pattern.match(w)] == []
    assert [w for w in others if pattern.match(w)] == []


def test_several_stems_make_one_group() -> None:
    pattern = re.compile(verb_pattern("때리|찌르|만들") + "는 ?법")
    assert all(pattern.search(t) for t in ["때리는 법", "찌르는 법", "만드는법"])
    assert not pattern.search("때린 법")


@pytest.mark.parametrize(
    ("stem", "message"),
    [
        ("때리ㄱ", "must end in a Hangul syllable"),
        ("때리 ", "must end in a Hangul syllable"),
        ("", "must start with a word of letters"),
        ("3d-print", "must start with a word of letters"),
    ],
)
def test_a_verb_that_cannot_be_conjugated_is_refused(stem: str, message: str) -> None:
    with pytest.raises(StemError, match=message):
        forms(stem)

