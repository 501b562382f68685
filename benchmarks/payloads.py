"""What taking a typed payload costs: genflow's check and strict structuring beside
cattrs' own structuring of the same payload (a plain `cattrs.Converter`, which
checks nothing and coerces what it can). Ratios within one run are the figure.

`check_payload` walks the payload once (ints in 64 bits, UTF-8 strings, depth);
`structure_payload` is that walk plus the strict converter.
"""

from __future__ import annotations

from typing import Any

import attrs
import cattrs

from genflow.codec import check_payload, structure_payload

from .common import Figure, figure, per_call_us


@attrs.define
class Address:
    street: str
    city: str


@attrs.define
class Signup:
    name: str
    age: int
    address: Address
    tags: list[str] = attrs.field(factory=list)


SIGNUP = {"name": "Ada", "age": 36, "address": {"street": "1 Analytical Way", "city": "London"},
          "tags": ["vip", "early", "math"]}
NUMBERS = list(range(100))
CASES: dict[str, tuple[Any, Any]] = {
    "an attrs payload (4 fields, nested)": (SIGNUP, Signup),
    "list[int] of 100": (NUMBERS, list[int]),
}


def workloads() -> dict[str, tuple[Any, Any]]:
    """Each case's payload as genflow and as a plain cattrs converter take it."""
    plain = cattrs.Converter(detailed_validation=False)
    return {case: (structure_payload(payload, tp, "e"), plain.structure(payload, tp))
            for case, (payload, tp) in CASES.items()}


def run(quick: bool = False) -> list[Figure]:
    plain = cattrs.Converter(detailed_validation=False)
    number = 200 if quick else 5000
    figures = []
    for case, (payload, tp) in CASES.items():
        cattrs_us = per_call_us(lambda p=payload, t=tp: plain.structure(p, t), number=number)
        check_us = per_call_us(lambda p=payload, t=tp: check_payload(p, "e", t), number=number)
        genflow_us = per_call_us(lambda p=payload, t=tp: structure_payload(p, t, "e"),
                                 number=number)
        base = sorted(cattrs_us)[len(cattrs_us) // 2]
        figures += [
            figure("payloads", f"{case}: plain cattrs", cattrs_us),
            figure("payloads", f"{case}: check_payload", check_us),
            figure("payloads", f"{case}: structure_payload", genflow_us,
                   note=f"{sorted(genflow_us)[len(genflow_us) // 2] / base:.1f}x plain cattrs"),
        ]
    return figures
