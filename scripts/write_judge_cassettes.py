"""Write tasks/<task>/cassettes/judge/replay.json from a replay run (`pytest tasks/`) and the reviews below.

The reviews are hand-written judgements of each task's replayed diff (no model API is reachable where the
tasks are built), stored in the shape a Responses API answer has; every evidence quote is checked against
the diff. Usage: python scripts/write_judge_cassettes.py runs/<run_id> tasks
"""

import hashlib
import json
import sys
from pathlib import Path

from pytest_oneshot.judge import GradedResult, JudgeRequest
from pytest_oneshot.judge.responses import request_body
from pytest_oneshot.task import load_task

run = Path(sys.argv[1])
tasks = Path(sys.argv[2])
REVIEWS = {
    "add-exclude-option": (
        0.85,
        "The change is small and in the code's own style: a keyword-only `exclude` parameter on top_words, "
        "filtered before "
        "most_common, and an argparse option with a small type helper. The README gains a clear example. One "
        "blemish: the "
        "existing plain stdin example (`cat essay.txt | python -m textstats`) was rewritten to use --exclude "
        "instead of "
        "adding a new line, so the README no longer shows the simplest form; `_word_list` has no docstring "
        "unlike its neighbours.",
        [
            "def top_words(text: str, n: int = 10, *, exclude: Iterable[str] = ()) -> list[tuple[str, int]]:",
            "return Counter(word for word in words(text) if word not in excluded).most_common(n)",
            "+cat essay.txt | python -m textstats --exclude the,and,of",
        ],
    ),
    "document-cli": (
        0.95,
        "Docstrings state what the functions raise and their defaults (Args/Raises) rather than restating names, e.g. "
        "convert() lists the accepted boolean spellings and both exceptions, and set_value() says comments "
        "are dropped. "
        "Every argparse argument gains a help text. The README section is concise, documents exit statuses, and its "
        "console example is consistent with the CLI's behaviour. Only a slight redundancy: the exit statuses "
        "are repeated "
        "in main()'s docstring and the README.",
        [
            "        ValueError: an ``int`` or ``float`` does not parse.",
            "The file is rewritten with :func:`dump`, so comments are not kept.",
            "$ tinyconf get app.conf db.user --default admin",
        ],
    ),
    "extract-validation-helpers": (
        0.9,
        "The SKU and quantity checks now live once in inventory/validation.py and every copy in store.py and "
        "csvio.py is "
        "gone; the exceptions moved to inventory/errors.py, which both modules import without a cycle, and "
        "store.py keeps "
        "re-exporting them so existing imports still work. csvio.py wraps each row in one try block to keep "
        "the line-number "
        "prefix. A minor point: the new `_parse_int` helper has no docstring while the rest of the module "
        "documents its functions.",
        [
            "+from inventory.errors import InsufficientStock, InventoryError",
            "+        sku = validate_sku(sku)",
            '+__all__ = ["SKU_PATTERN", "InsufficientStock", "Inventory", "InventoryError"]',
        ],
    ),
    "fix-off-by-one": (
        0.95,
        "A one-line fix at the cause: integer ceiling division keeps the count exact for very large integers and keeps "
        "max(1, ...), and the comment is updated to say why. Nothing else is touched, no dead code. `-(-a // b)` is a "
        "known idiom, though `(total_items + per_page - 1) // per_page` would read more plainly to some.",
        [
            "+    return max(1, -(-total_items // per_page))",
            "+    # Integer ceiling division: float division loses precision for very large counts,",
        ],
    ),
    "fix-scm-empty-repo-fallback": (
        1.0,
        "A minimal, one-line change in the git parsing that uses the existing Configuration.fallback_version and keeps "
        "the previous 0.0 default when none is set. No other version scheme is touched, no leftovers.",
        ['+        tag = config.version_cls(config.fallback_version or "0.0")'],
    ),
    "fix-tomli-loads-type-error": (
        0.95,
        "The fix sits at the start of loads() where the input is first used: the try/except costs nothing on "
        "the normal "
        "path, load() is unchanged, and the error names the offending type. `from None` hides the unhelpful original "
        "AttributeError. Catching TypeError as well as AttributeError is slightly broader than needed but harmless.",
        [
            "+    except (AttributeError, TypeError):",
            "+            f\"Expected str object, not '{type(__s).__qualname__}'\"",
        ],
    ),
}
for item in sorted(run.iterdir()):
    if not (item / "diff.patch").is_file():
        continue
    name = item.name.split("__")[0]
    task = load_task(tasks / name)
    diff = (item / "diff.patch").read_bytes()
    result = json.loads((item / "evaluation_results.json").read_text())
    rubric = next(r for r in task.spec.evaluation.rubrics if r.id == "code_quality")
    score, reasoning, evidence = REVIEWS[name]
    for quote in evidence:
        assert quote in diff.decode(), (name, quote)
    tests = tuple(GradedResult(t, result["tests"]["kinds"][t], s) for t, s in result["tests"]["statuses"].items())
    body = request_body(
        JudgeRequest(
            task_id=task.spec.task_id,
            instructions=task.instructions,
            diff=diff.decode(),
            tests=tests,
            rubric=rubric,
            model="replay",
        )
    )
    text = json.dumps({"rubric_id": "code_quality", "score": score, "reasoning": reasoning, "evidence": evidence})
    prompt_chars = sum(len(part["content"]) for part in body["input"])
    seed = hashlib.sha256(diff).hexdigest()
    turns = [
        {
            "output": [
                {"id": f"rs_{seed[:40]}", "type": "reasoning", "summary": []},
                {
                    "id": f"msg_{seed[24:64]}",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
                },
            ],
            "usage": {
                "input_tokens": prompt_chars // 4,
                "output_tokens": len(text) // 4 + 320,
                "reasoning_output_tokens": 320,
            },
        }
    ]
    cassette = {
        "format": "oneshot-judge-cassette/1",
        "model": "hand-written",
        "task_id": task.spec.task_id,
        "rubrics": {"code_quality": {"diff_sha256": hashlib.sha256(diff).hexdigest(), "turns": turns}},
    }
    out = tasks / name / "cassettes" / "judge" / "replay.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(cassette, indent=2) + "\n")
    print(out, score)
