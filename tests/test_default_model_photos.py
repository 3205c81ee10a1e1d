"""The default model names real things in real photos (issue #12's acceptance test).

It runs on the development photos installed on this machine (scikit-image, scikit-learn and
matplotlib ship theirs with the test dependencies; the Debian ones are used when installed)
and holds the model to the ImageNet classifier alone, measured the same way on the same photos.
"""

import pytest

from captioner import Captioner
from captioner.nouns import DEFAULT_WEIGHTING
from training.real_photos import head_only_reports, load_dev_set, model_report


@pytest.fixture(scope="module")
def photos():
    found, _missing = load_dev_set()
    assert len(found) >= 8, "scikit-image, scikit-learn and matplotlib photos should be here"
    return found


def test_the_default_model_copies_nouns():
    decoder = Captioner.load(device="cpu").decoder
    assert decoder.config.copy_nouns > 400


@pytest.mark.slow
def test_the_default_model_names_the_subject_at_least_as_often_as_the_classifier(photos):
    """The baseline is the classifier's top noun over the whole photo (pooled, as it was
    trained). Its most confident cell does as well on all 48 photos (65%) but names one photo
    more of the nine Python-package ones (6 against the model's 5): see
    docs/reports/real_photos.md."""
    model = model_report(photos, None, "cpu")
    reports = head_only_reports(photos, weightings=(DEFAULT_WEIGHTING,))
    # Hedging (issue #25) says "an animal" where it is unsure, and the classifier's guess is
    # sometimes right: the issue allows two photos fewer than before (30 of 48 against the
    # classifier's 31).
    allowance = 2 / len(photos)
    assert model.rate >= reports[DEFAULT_WEIGHTING, "pooled"].rate - allowance, model.table()
    # 30 of all 48 development photos (63%); 5 of the nine Python-package photos, the fewest
    # a test machine has.
    assert model.rate >= 0.5, model.table()
