"""Program texts for the tests of the program document: a valid header and a commission
rule to build cases from, and the problems a text is rejected with."""

import pytest

from schemas.program_loader import ProgramError, parse_program

# Nine lines, so the first rule starts on line 10 in every case below.
HEADER = """\
program_id: demo
version: 1
name: Demo
currency: EUR
effective_from: 2026-01-01
effective_to: 2026-12-31
period: quarter
categories: [hardware, software]
rules:
"""
COMMISSION = """\
  - kind: commission
    id: sales
    pays: currency
    rates:
      - {category: hardware, rate_bp: 300}
"""


def problems_of(text: str, source: str = "demo.yaml") -> list[str]:
    with pytest.raises(ProgramError) as caught:
        parse_program(text.encode(), source)
    return [str(problem) for problem in caught.value.problems]
