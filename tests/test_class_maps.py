"""Each photo's class maps are computed once (issue #26): the copy memory and the semantic
features read the same class log-probabilities, class -> noun is a sparse sum, the ONNX
encoder graph gives them with the features, and beam search no longer carries the raw features
it does not read. None of it may change a caption: each test compares with the straightforward
computation of before, written out here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from captioner import Captioner
from captioner.copy_head import CopyHead
from captioner.decoder import ImageMemory
from captioner.onnx_backend import class_head, graph_key
from captioner.options import DecodeOptions

SAMPLES = sorted((Path(__file__).parents[1] / "captioner" / "samples").glob("*.jpg"))


def plain(model: Captioner) -> Captioner:
    """Without hedging and the person detector (issue #25), which came after and are tested
    on their own: these tests compare with the copy path of before."""
    model.set_hedging(None)
    model.set_people(False)
    return model


@pytest.fixture(scope="module")
def model() -> Captioner:
    return plain(Captioner.load("default", backend="torch"))


@pytest.fixture(scope="module")
def features(model, photos) -> torch.Tensor:
    return model.encode([*SAMPLES, *photos.values()])  # (12, 7, 7, 1280)


def dense_noun_probs(head: CopyHead, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The product of before: class probabilities times the whole class -> noun matrix."""
    named = (head.class_to_noun.sum(1) > 0).to(classes.dtype)
    return classes @ head.class_to_noun, classes @ named


def test_the_sparse_class_to_noun_sum_is_the_dense_product(model, features):
    head = model.decoder.copy_head
    classes = head.class_log_probs(features).flatten(1, 2).exp()
    for got, expected in zip(
        head._noun_probs(classes), dense_noun_probs(head, classes), strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_a_class_naming_several_nouns_adds_to_each(model, features):
    """The shipped tables give a class at most one noun; a table of one's own may give more."""
    torch.manual_seed(0)
    shipped = model.decoder.copy_head
    head = CopyHead(10, shipped.encoder_dim, 8, shipped.classes, 6)
    table = torch.zeros(shipped.classes, 6)
    table[0, :3] = torch.tensor([0.5, 0.25, 1.0])  # one class, three nouns
    table[1, 5] = 2.0
    table[7, [1, 5]] = 1.0
    table[999, 0] = 0.3
    ids = torch.arange(6)
    head.attach(shipped.noun_head_weight, shipped.noun_head_bias, table, ids, ids)
    classes = head.class_log_probs(features).flatten(1, 2).exp()
    for got, expected in zip(
        head._noun_probs(classes), dense_noun_probs(head, classes), strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)
    # A changed table is read again, not the one derived before.
    head.attach(shipped.noun_head_weight, shipped.noun_head_bias, table * 2, ids, ids)
    torch.testing.assert_close(head._noun_probs(classes)[0], (classes @ table) * 2)


def test_prepare_reads_given_class_maps_as_it_computes_them(model, features):
    decoder = model.decoder
    computed = decoder.prepare(features)
    given = decoder.prepare(features, decoder.copy_head.class_log_probs(features))
    for name in ("features", "attention_keys", "projected_features", "noun_probs", "noun_mass"):
        torch.testing.assert_close(getattr(given, name), getattr(computed, name), rtol=0, atol=0)


def select_every_field(memory: ImageMemory, images: torch.Tensor) -> ImageMemory:
    """select_images of before: every per-image field copied at every drop."""
    fields = ("features", "attention_keys", "projected_features", "noun_probs", "noun_mass")
    return memory._replace(
        **{
            f: getattr(memory, f).index_select(0, images)
            for f in fields
            if getattr(memory, f) is not None
        }
    )


@pytest.mark.parametrize("beam_size", [5, 1, 3])
def test_captions_scores_maps_and_gates_equal_the_dense_path(
    model, features, beam_size, monkeypatch
):
    options = DecodeOptions(beam_size=beam_size)
    results = model.decode(features, options)
    with monkeypatch.context() as patch:
        patch.setattr(CopyHead, "_noun_probs", dense_noun_probs)
        patch.setattr(ImageMemory, "select_images", select_every_field)
        # Before, the semantic features computed the class log-probabilities a second time.
        patch.setattr(
            type(model.decoder), "_class_log_probs", lambda self, features, given=None: None
        )
        patch.setattr(
            type(model.decoder),
            "_copy_memory",
            lambda self, f, classes: self.copy_head.prepare(f, self.taught)._asdict(),
        )
        grid_cells = type(model.decoder)._grid_cells
        patch.setattr(
            type(model.decoder),
            "_grid_cells",
            lambda self, f, classes: grid_cells(self, f, self.copy_head.class_log_probs(f)),
        )
        reference = model.decode(features, options)
    assert len(results) == len(features)
    for result, expected in zip(results, reference, strict=True):
        assert [b.text for b in result.beams] == [b.text for b in expected.beams]
        for beam, other in zip(result.beams, expected.beams, strict=True):
            assert beam.score == pytest.approx(other.score, abs=1e-5)
            assert beam.log_prob == pytest.approx(other.log_prob, abs=1e-5)
            np.testing.assert_allclose(beam.alphas, other.alphas, atol=1e-5)
            np.testing.assert_allclose(beam.context_gate, other.context_gate, atol=1e-5)
            np.testing.assert_allclose(beam.copy_gate, other.copy_gate, atol=1e-5)
            for name, gate in beam.gates.items():
                np.testing.assert_allclose(gate, other.gates[name], atol=1e-5)


def test_dropping_finished_photos_leaves_the_unread_features_behind(model, features):
    memory = model.decoder.prepare(features)
    assert memory.projected_features is not None  # the default model's step reads these
    kept = memory.select_images(torch.tensor([2, 0]))
    assert kept.features is None
    torch.testing.assert_close(kept.attention_keys, memory.attention_keys[[2, 0]])
    torch.testing.assert_close(kept.noun_probs, memory.noun_probs[[2, 0]])


def test_the_onnx_encoder_gives_the_class_maps_and_the_same_captions(model, features, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = plain(Captioner.load("default", backend="onnx"))
    pixels = torch.stack([model.preprocess(path) for path in SAMPLES])
    onnx_features = onnx.encode(pixels)
    classes = onnx._class_log_probs.get(onnx_features)
    assert classes is not None and classes.shape == (len(SAMPLES), 7, 7, 1000)
    expected = model.decoder.copy_head.class_log_probs(onnx_features)
    torch.testing.assert_close(classes, expected, rtol=0, atol=1e-3)
    texts = [r.text for r in onnx.decode(onnx_features)]
    assert texts == [r.text for r in model.decode(features[: len(SAMPLES)])]
    # Features sliced or made elsewhere have no class maps beside them: computed as before.
    assert onnx._class_log_probs.get(onnx_features[:2]) is None
    assert [r.text for r in onnx.decode(onnx_features[:2])] == texts[:2]


def test_the_graph_with_class_maps_is_cached_apart_from_the_plain_one(model):
    plain = graph_key(model.encoder)
    assert graph_key(model.encoder, class_head(model.decoder)) != plain
    assert class_head(Captioner.load("shapes", backend="torch").decoder) is None


def test_a_step_that_reads_the_features_keeps_them(model, features):
    memory = model.decoder.prepare(features)._replace(projected_features=None)
    kept = memory.select_images(torch.tensor([1]))
    torch.testing.assert_close(kept.features, memory.features[[1]])
