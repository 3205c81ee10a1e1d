"""COCO caption metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D from the pycocoevalcap scorers.

pycocoevalcap needs Java twice: for the Stanford PTB tokenizer and for METEOR. Without Java the
captions are tokenized in Python the way the PTB tokenizer does it and METEOR is skipped with a
warning, so an evaluation still runs on a machine with only Python. Both tokenizers read the
captions with Unicode punctuation rewritten the ASCII way (captioner.vocab.normalize_punctuation,
as the vocabulary does), where they agree: the scores do not depend on whether Java is installed.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Hashable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from nltk.tokenize import TreebankWordTokenizer
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

from captioner.vocab import normalize_punctuation

logger = logging.getLogger(__name__)

JAVA_MISSING = (
    "METEOR skipped: Java not found on PATH (install a JRE, e.g. apt-get install "
    "default-jre-headless)"
)
# The Treebank tokenizer only splits off a period at the very end of its input, so multi-sentence
# captions are cut into sentences first ("A dog. A cat." -> "a dog a cat", as PTB does).
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_treebank = TreebankWordTokenizer()
# Words PTB keeps with a leading apostrophe; on any other word it is an opening quote, which
# Treebank leaves attached ("'stop" where PTB gives "stop")
_PTB_APOSTROPHE_WORDS = frozenset(
    ("'s", "'d", "'m", "'re", "'ve", "'ll", "'em", "'til", "'till", "'cause", "'n", "'t")
)


@dataclass(frozen=True)
class MetricsResult(Mapping[str, float]):
    """Corpus scores by COCO name (Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr), readable as a dict.

    METEOR is absent when it was skipped; `warnings` says why. `per_image` maps each image id to
    its own {"Bleu_4": ..., "CIDEr": ...} for dumping the best and worst captions.
    """

    scores: dict[str, float]
    per_image: dict[Hashable, dict[str, float]]
    warnings: list[str]

    def __getitem__(self, name: str) -> float:
        return self.scores[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)


def coco_metrics(
    references: Mapping[Hashable, list[str]],
    candidates: Mapping[Hashable, str],
    *,
    meteor: bool = True,
) -> MetricsResult:
    """Score one candidate caption per image against that image's reference captions.

    Both mappings must cover the same images. Captions are raw text; they are tokenized and
    lower-cased here. CIDEr takes its n-gram weights from the references of all images given,
    so score a whole test set at once, never image by image.
    """
    _check_inputs(references, candidates)
    image_ids = list(references)
    warnings: list[str] = []

    # One tokenizer run for both sides: starting the JVM costs more than tokenizing.
    texts = {("reference", i): [_one_line(text) for text in references[i]] for i in image_ids}
    texts |= {("candidate", i): [_one_line(candidates[i])] for i in image_ids}
    tokens = _tokenize(texts, warnings)
    gts = {i: tokens[("reference", i)] for i in image_ids}
    res = {i: tokens[("candidate", i)] for i in image_ids}
    empty = sum(1 for i in image_ids if not res[i][0])
    if empty:
        _warn(warnings, f"{empty} of {len(image_ids)} generated captions are empty; they score 0")

    bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"Bleu_{n}": float(bleu[n - 1]) for n in range(1, 5)}
    if meteor:
        meteor_score = _meteor(gts, res, warnings)
        if meteor_score is not None:
            scores["METEOR"] = meteor_score
    rouge, _ = Rouge().compute_score(gts, res)
    scores["ROUGE_L"] = float(rouge)
    cider, cider_per_image = Cider().compute_score(gts, res)
    scores["CIDEr"] = float(cider)

    per_image = {
        image_id: {"Bleu_4": float(bleu_per_image[3][k]), "CIDEr": float(cider_per_image[k])}
        for k, image_id in enumerate(image_ids)  # the scorers keep the order of gts
    }
    return MetricsResult(scores, per_image, warnings)


def _check_inputs(
    references: Mapping[Hashable, list[str]], candidates: Mapping[Hashable, str]
) -> None:
    if not references:
        raise ValueError("no images to evaluate: references is empty")
    without_candidate = [i for i in references if i not in candidates]
    without_references = [i for i in candidates if i not in references]
    if without_candidate or without_references:
        raise ValueError(
            "references and candidates must cover the same images: "
            f"{len(without_candidate)} without a candidate {without_candidate[:3]}, "
            f"{len(without_references)} without references {without_references[:3]}"
        )
    for image_id, texts in references.items():
        if isinstance(texts, str) or not texts:
            raise ValueError(f"image {image_id!r}: references must be a non-empty list of captions")
        if not isinstance(candidates[image_id], str):
            raise ValueError(f"image {image_id!r}: the candidate must be one caption string")


def _one_line(text: str) -> str:
    # the tokenizer and METEOR both read one caption per line
    return " ".join(text.split())


def _tokenize(texts: dict[Hashable, list[str]], warnings: list[str]) -> dict[Hashable, list[str]]:
    """PTB-tokenize, lower-case and drop punctuation, as the COCO evaluation does."""
    texts = {
        key: [normalize_punctuation(text) for text in captions] for key, captions in texts.items()
    }
    if shutil.which("java") is None:
        _warn(
            warnings,
            "captions tokenized in Python: Java not found on PATH (scores can differ "
            "slightly from the official COCO evaluation)",
        )
    else:
        try:
            return _java_tokenize(texts)
        except (OSError, UnicodeDecodeError, RuntimeError) as error:
            _warn(
                warnings, f"captions tokenized in Python: the Java PTB tokenizer failed ({error})"
            )
    return {key: [_python_tokenize(text) for text in captions] for key, captions in texts.items()}


def _ptb_command() -> list[str]:
    return [
        "java", "-cp", ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR,
        "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
    ]  # fmt: skip


def _java_tokenize(texts: dict[Hashable, list[str]]) -> dict[Hashable, list[str]]:
    """What pycocoevalcap's PTBTokenizer does, but with the Java process checked and its stderr
    (a "PTBTokenizer tokenized N tokens" line on every call) shown only when it fails."""
    keys = [key for key, captions in texts.items() for _ in captions]
    lines = "".join(f"{text}\n" for captions in texts.values() for text in captions)
    done = subprocess.run(
        _ptb_command(),
        input=lines.encode(),
        capture_output=True,
        cwd=Path(ptbtokenizer.__file__).parent,  # where the jar is
        check=False,
    )
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"exit status {done.returncode}" + (f": {stderr[-1]}" if stderr else ""))
    output = done.stdout.decode().split("\n")
    if len(output) < len(keys):
        raise RuntimeError("it returned fewer lines than captions")
    tokenized: dict[Hashable, list[str]] = {key: [] for key in texts}
    for key, line in zip(keys, output, strict=False):  # a last empty string follows the last \n
        tokenized[key].append(
            " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)
        )
    return tokenized


def _python_tokenize(text: str) -> str:
    tokens = []
    for sentence in _SENTENCE_BREAK.split(text):
        # convert_parentheses: PTB writes brackets as -LRB- etc., which COCO keeps (lower-cased)
        tokens += _treebank.tokenize(sentence, convert_parentheses=True)
    lowered = (_opening_quote_dropped(token.lower()) for token in tokens)
    return " ".join(token for token in lowered if token not in PUNCTUATIONS)


def _opening_quote_dropped(token: str) -> str:
    if token[:1] == "'" and token[1:2].isalpha() and token not in _PTB_APOSTROPHE_WORDS:
        return token[1:]
    return token


def _meteor(
    gts: dict[Hashable, list[str]], res: dict[Hashable, list[str]], warnings: list[str]
) -> float | None:
    """Corpus METEOR from the Java scorer, or None (with a warning) when it cannot run."""
    if shutil.which("java") is None:
        _warn(warnings, JAVA_MISSING)
        return None
    try:
        scorer = Meteor()
    except OSError as error:
        _warn(warnings, f"METEOR skipped: could not start Java ({error})")
        return None
    try:
        score, _ = scorer.compute_score(gts, res)
    except (OSError, ValueError) as error:  # broken pipe, or an empty line where a score was due
        stderr_tail = _stop_meteor(scorer).strip().splitlines()[-1:]
        detail = f"; {stderr_tail[0]}" if stderr_tail else ""
        _warn(warnings, f"METEOR skipped: the METEOR Java process failed ({error}{detail})")
        return None
    finally:
        _stop_meteor(scorer)
    return float(score)


def _stop_meteor(scorer: Meteor) -> str:
    """End Meteor's JVM now and return what it wrote to stderr.

    Meteor only stops its process in __del__, which waits on a lock that compute_score leaves
    held when it fails, so a failed scorer would hang the interpreter at exit. Safe to repeat.
    """
    if scorer.lock.locked():
        scorer.lock.release()
    process = scorer.meteor_p
    process.kill()
    process.wait()
    stderr = "" if process.stderr.closed else process.stderr.read().decode(errors="replace")
    with suppress(OSError):  # unflushed input to a dead process: nothing left to deliver
        process.stdin.close()
    process.stdout.close()
    process.stderr.close()
    return stderr


def _warn(warnings: list[str], message: str) -> None:
    warnings.append(message)
    logger.warning(message)
