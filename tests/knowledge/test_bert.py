import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from knowledge.bert import NativeBert, unsupported_reason
from knowledge.embedder import SentenceTransformerEmbedder, default_embedder_path

TEXTS = [
    "How do I add documents to the knowledge base?",
    "서울은 대한민국의 수도입니다.",
    "",
    "word " * 600,  # longer than the model's 256-token window: truncated like sentence-transformers does
    "Short.",
    "Émojis 🎉 and accents déjà vu",
]


def test_the_shipped_embedder_runs_natively_with_the_same_vectors() -> None:
    from sentence_transformers import SentenceTransformer

    path = default_embedder_path()
    assert unsupported_reason(path) is None
    embedder = SentenceTransformerEmbedder()
    assert embedder.native is not None and embedder.dimension == 384
    ours = embedder.embed(TEXTS)
    reference = SentenceTransformer(str(path), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batching_and_order_do_not_change_vectors() -> None:
    model = NativeBert(default_embedder_path())
    together = model.encode(TEXTS, batch_size=64)
    one_by_one = np.vstack([model.encode([text]) for text in TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def copy_model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(default_embedder_path(), folder)
    return folder


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda f: (f / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True})), "mean"),
        (lambda f: (f / "modules.json").write_text(json.dumps([{"type": "x.Custom", "path": ""}])), "Transformer"),
        (lambda f: (f / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"})), "xlm-roberta"),
        (lambda f: (f / "modules.json").unlink(), "missing"),
    ],
)
def test_other_models_are_left_to_sentence_transformers(tmp_path: Path, edit, reason: str) -> None:
    folder = copy_model(tmp_path)
    edit(folder)
    assert reason in str(unsupported_reason(folder))
