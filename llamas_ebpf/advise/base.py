"""The advisor interface: what every advisor reads, and what it hands back.

An advisor turns (inventory, observation window, current policy, recent decisions with their
measured effect, guardrails) into a policy document and its rationale. It never applies
anything: the loop validates what comes back exactly as `llamas policy apply` validates a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from llamas_ebpf.advise.summary import WindowSummary
from llamas_ebpf.config import Guardrails
from llamas_ebpf.devices.inventory import Inventory
from llamas_ebpf.policy.document import PolicyDocument
from llamas_ebpf.policy.validate import HostFacts


@dataclass
class AdvisorInput:
    inventory: Inventory
    window: WindowSummary
    current: PolicyDocument | None
    recent: list[dict[str, Any]]  # audit entries of recent decisions, with their measured effect
    guard: Guardrails
    host: HostFacts
    description_texts: dict[str, str] = field(default_factory=dict)  # file name -> TOML, verbatim


@dataclass
class Usage:
    model: str | None = None
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Advice:
    advisor: str
    raw: bytes | None  # the document as the advisor wrote it (JSON), validated by the loop
    rationale: str = ""
    explanations: dict[str, str] = field(default_factory=dict)  # rule name -> why
    usage: Usage = field(default_factory=Usage)
    unavailable: str | None = None  # why no advice came (LLM unreachable, budget spent)
    keep_current: bool = False  # nothing new: the policy in force stays


class Advisor(Protocol):
    name: str

    def advise(self, given: AdvisorInput) -> Advice: ...
