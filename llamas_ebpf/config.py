"""Host configuration, /etc/llamas/config.toml ($LLAMAS_CONFIG_DIR). The guardrails here bound
every policy document, whoever wrote it; no document can change them.

    [guardrails]
    max_rules = 64               # rules in one document
    total_max_mbps = 1000        # page migration budget of the whole host, MB/s
    deny_comm = ["sshd"]         # process names never touched (added to the built-in list)
    deny_pids = []
    scope_cgroups = []           # when set, only processes in these cgroups (or below) are touched

    [access]
    targets = 32                 # processes DAMON watches at once (1-64)
    soft_dirty = true            # find written pages through soft-dirty (false: write faults only)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llamas_ebpf import inputs
from llamas_ebpf.errors import LlamasError
from llamas_ebpf.paths import Paths

# Never touched, whatever the configuration says: init, the kernel's own helpers, ourselves.
BUILTIN_DENY_COMM = ("systemd", "init", "kthreadd", "llamas")


class Guardrails(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rules: Annotated[int, Field(ge=1, le=1024)] = 64
    total_max_mbps: Annotated[int, Field(ge=1, le=100_000)] = 1000
    deny_comm: list[Annotated[str, Field(min_length=1, max_length=15)]] = Field(default_factory=list)
    deny_pids: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    scope_cgroups: list[str] = Field(default_factory=list)

    @property
    def denied_comms(self) -> set[str]:
        return set(BUILTIN_DENY_COMM) | set(self.deny_comm)


class LlmConfig(BaseModel):
    """[llm] in config.toml: how the claude advisor talks to the Messages API. The API key is
    never stored here: ANTHROPIC_API_KEY. The base URL also comes from ANTHROPIC_BASE_URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None  # default: the newest Sonnet the installed SDK does not deprecate
    base_url: str | None = None
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 60.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    max_calls_per_hour: Annotated[int, Field(ge=1)] = 60
    max_tokens_per_hour: Annotated[int, Field(ge=1000)] = 600_000
    prompt_budget_tokens: Annotated[int, Field(ge=2000, le=200_000)] = 6000
    max_output_tokens: Annotated[int, Field(ge=256, le=32_000)] = 4096
    fallback: Literal["keep", "heuristic"] = "keep"  # when the LLM cannot answer
    # what of a process's command line goes to the API (advise/claude.py share())
    share_cmdline: Literal["name", "redacted", "full"] = "redacted"


class AccessConfig(BaseModel):
    """[access] in config.toml: how many processes DAMON watches at once (README, Access)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    targets: Annotated[int, Field(ge=1, le=64)] = 32
    # soft-dirty write-protects a watched process's pages once per period (one fault per page
    # written afterwards), and resets soft-dirty bits the process may use itself (CRIU does)
    soft_dirty: bool = True


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    guardrails: Guardrails = Guardrails()
    llm: LlmConfig = LlmConfig()
    access: AccessConfig = AccessConfig()


def load(paths: Paths | None = None) -> Config:
    path = (paths or Paths.from_env()).config_dir / "config.toml"
    if not path.exists():
        return Config()
    try:
        return Config.model_validate(inputs.parse_toml(inputs.read_text(path, inputs.CONFIG_BYTES)))
    except inputs.TomlError as exc:
        raise LlamasError(f"{path}{f':{exc.line}' if exc.line else ''}: {exc}") from None
    except UnicodeDecodeError:
        raise LlamasError(f"{path}: not UTF-8 text") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise LlamasError(f"{path}: {field}: {first['msg']}") from None
