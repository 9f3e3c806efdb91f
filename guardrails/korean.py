"""Korean verb stems written once and matched in every conjugated form.

A Korean ending often fuses into the stem's last syllable: 때리다 (hit) is written 때려 (때리+어), 때렸 (past),
때릴 (future), 때린 (done), 때림 and 때립니다, so a pattern that lists the stem 때리 misses most of them. In a
policy pattern, `<<verb:때리|찌르|만들>>` stands for every first form of those stems: the stem itself (때리다,
때리고, 때리는), the stem with ㄴ, ㄹ, ㅁ or ㅂ fused into its last syllable, the 아/어 contraction (때려, 봐,
줘, 돼, 해, 써) and its past (때렸, 봤). What follows the stem is left to the pattern.

Handled: stems ending in a vowel, 하다, ㅡ-dropping stems (쓰다 -> 써, 아프다 -> 아파), 르-irregular stems
(찌르다 -> 찔러, 자르다 -> 잘라) and ㄹ-final stems (만들다 -> 만드는, 만든, 만듭). Other consonant-final stems
keep their stem in every form (죽다 -> 죽어, 죽은), so the stem is matched as written. ㅂ-, ㄷ- and ㅅ-irregular
stems (돕다 -> 도와, 묻다 -> 물어) are not expanded: write their changed forms out.
"""

from __future__ import annotations

import re

# Hangul syllables and the keyboard letters (compatibility jamo) that spell them out one by one.
HANGUL_RANGES = ((0xAC00, 0xD7A3), (0x3131, 0x318E))
HANGUL = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in HANGUL_RANGES) + "]")
_FIRST, _LAST = HANGUL_RANGES[0]
# Vowel and final-consonant numbers in the Unicode syllable formula (syllable = first + (initial * 21 +
# vowel) * 28 + final), for the jamo this module changes.
_A, _AE, _EO, _E, _YEO, _O, _WA, _WAE, _OE, _U, _WEO, _EU, _I = 0, 1, 4, 5, 6, 8, 9, 10, 11, 13, 14, 18, 20
_N, _L, _LM, _M, _B, _SS = 4, 8, 10, 16, 17, 20
_RIEUL = 5  # ㄹ as an initial consonant
_HA = "하"
# The 아/어 ending fused into the stem's last vowel: 리+어 -> 려, 보+아 -> 봐, 주+어 -> 줘, 되+어 -> 돼.
_CONTRACTED = {_I: _YEO, _O: _WA, _U: _WEO, _OE: _WAE}
# Vowels that absorb 아/어 unchanged: 가+아 -> 가, 서+어 -> 서, 보내+어 -> 보내.
_ABSORBING = {_A, _EO, _AE, _E, _YEO}
_BRIGHT = {_A, _O}  # a stem whose vowel before ㅡ is one of these takes 아, else 어 (아파, 써)

def _parts(syllable: str) -> tuple[int, int, int]:
    code = ord(syllable) - _FIRST
    return code // (21 * 28), code // 28 % 21, code % 28


def _syllable(initial: int, vowel: int, final: int = 0) -> str:
    return chr(_FIRST + (initial * 21 + vowel) * 28 + final)


def _is_syllable(ch: str) -> bool:
    return _FIRST <= ord(ch) <= _LAST


def forms(stem: str) -> list[str]:
    """The stem's first forms, each a string the conjugated word starts with: 때리 -> 때리, 때린, 때릴, 때림,
    때립, 때려, 때렸. The text before the last syllable is kept as written, so it may hold pattern syntax
    (`찍어 ?버리`)."""
    if not stem or not _is_syllable(stem[-1]):
        raise ValueError(f"Korean verb stem {stem!r} must end in a Hangul syllable (때리 for 때리다)")
    head, last = stem[:-1], stem[-1]
    initial, vowel, final = _parts(last)
    if final == _L:  # 만들: the ㄹ drops before ㄴ, ㅂ, ㅅ and fuses with ㅁ (만드는, 만든, 만듭, 만듦)
        return [head + s for s in (last, _syllable(initial, vowel), _syllable(initial, vowel, _N),
                                   _syllable(initial, vowel, _B), _syllable(initial, vowel, _LM))]
    if final:  # 죽, 밟: endings start a new syllable
        return [stem]
    fused = [head + last] + [head + _syllable(initial, vowel, f) for f in (_N, _L, _M, _B)]
    if last == _HA:
        return [*fused, head + "해", head + "했"]
    if vowel == _EU and initial == _RIEUL and head and _is_syllable(head[-1]):
        # 르-irregular: 찌르 -> 찔러, 자르 -> 잘라; the syllable before 르 takes a ㄹ.
        before, (b_initial, b_vowel, b_final) = head[:-1], _parts(head[-1])
        if not b_final:
            joined = before + _syllable(b_initial, b_vowel, _L)
            ending = _A if b_vowel in _BRIGHT else _EO
            return [*fused, joined + _syllable(_RIEUL, ending), joined + _syllable(_RIEUL, ending, _SS)]
    if vowel == _EU:  # 쓰 -> 써, 아프 -> 아파
        bright = bool(head) and _is_syllable(head[-1]) and _parts(head[-1])[1] in _BRIGHT
        ending = _A if bright else _EO
        return [*fused, head + _syllable(initial, ending), head + _syllable(initial, ending, _SS)]
    if vowel in _CONTRACTED:
        short = _CONTRACTED[vowel]
        return [*fused, head + _syllable(initial, short), head + _syllable(initial, short, _SS)]
    if vowel in _ABSORBING:
        return [*fused, head + _syllable(initial, vowel, _SS)]
    return fused  # ㅟ, ㅢ: the ending stays a syllable of its own (뛰어, 띄어)
