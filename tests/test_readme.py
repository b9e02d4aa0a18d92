"""README.md tells the truth: every shell command its code blocks show is checked (issue 26 item 4).

Commands are read from bash/sh blocks (every line) and from console and plain blocks (the `$ `
lines), `\\` continuations joined, and from the `<!-- output: COMMAND -->` markers of `make readme`.
Each part of a pipeline is checked by its program:
- cnnapp: option by option against the click command it names (groups, subcommands and
  `launch -- COMMAND` followed): an option that does not exist, a missing value or a number or
  choice that does not parse fails;
- python -m MODULE must be importable, python FILE must exist, python -c CODE must compile;
- make TARGET must be the Makefile's; saved_model_cli goes through TensorFlow's own parser and
  needs --tag_set with --signature_def;
- curl: known options only, JSON bodies that parse, a TF Serving or cnnapp route;
- no command changes into ../shared (the data there is only read: runs go to your own folder);
- any other program must be in OTHER_PROGRAMS: a new kind of command needs a decision here.
The cheap commands also run (RUNS), in a scratch folder holding tiny exports named as the README
names them. The output blocks themselves are pasted by `make readme` (docs/readme_outputs.py).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from conftest import export_tiny_image_model, export_tiny_text_model, shared_data

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SCRIPT_LANGS = {"bash", "sh", "shell"}         # every line is a command
PROMPT_LANGS = {"console", ""}                 # only `$ ` lines are
OTHER_PROGRAMS = {"docker", "cat", "tail", "grep", "base64", "kill", "tensorboard"}
ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
NUMBER = re.compile(r"^-\d")
SEPARATORS = {"|", "||", "&&", ";", "&"}
MARKER = re.compile(r"^<!-- output:\s*(?P<command>.*?)(?:\s*\|\s*abridge \d+ \d+)?\s*-->$")
ROUTE = re.compile(r"^/v1/models(/[^/:]+((/versions/\d+)|(/labels/[^/:]+))?(/metadata)?"
                   r"(:(predict|classify|regress|explain))?)?$")


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    output: tuple[str, ...] = ()        # the lines the README shows under a `$ ` command

    def __str__(self) -> str:
        return f"README.md line {self.line}: {self.text}"


def readme_commands(text: str) -> list[Command]:
    commands: list[Command] = []
    lang, in_block, pending, output_of = "", False, None, None
    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            if in_block and output_of is not None:
                commands[output_of] = Command(commands[output_of].line, commands[output_of].text,
                                              tuple(commands[output_of].output))
            in_block, lang, output_of = not in_block, line[3:].strip(), None
            continue
        marker = MARKER.match(line.strip())
        if marker and not in_block:
            commands.append(Command(number, marker["command"]))
            continue
        if not in_block or lang not in SCRIPT_LANGS | PROMPT_LANGS:
            continue
        if pending is not None:
            pending[1].append(line.rstrip("\\").strip())
            if not line.endswith("\\"):
                commands.append(Command(pending[0], " ".join(pending[1])))
                output_of, pending = len(commands) - 1, None
            continue
        if line.startswith("$ "):
            body = line[2:]
        elif lang in SCRIPT_LANGS and line.strip() and not line.lstrip().startswith("#"):
            body = line
        else:
            if output_of is not None and lang in PROMPT_LANGS:
                c = commands[output_of]
                commands[output_of] = Command(c.line, c.text, (*c.output, line))
            continue
        if body.endswith("\\"):
            pending = (number, [body.rstrip("\\").strip()])
        else:
            commands.append(Command(number, body))
            output_of = len(commands) - 1
    return commands


COMMANDS = readme_commands(README.read_text())


def segments(text: str) -> list[list[str]]:
    """A command line -> its pipeline's parts as words (comments, `2>&1` and separators dropped)."""
    lexer = shlex.shlex(re.sub(r"\d?>&\d", " ", text), posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    parts: list[list[str]] = [[]]
    for word in lexer:
        if word in SEPARATORS:
            parts.append([])
        else:
            parts[-1].append(word)
    return [p for p in parts if p]


# ---------------------------------------------------------------------------------- the checks

def check_cnnapp(args: list[str]) -> None:
    from cnnapp.cli import cli
    _check_click(cli, "cnnapp", args)


def _check_click(command: click.Command, path: str, args: list[str]) -> None:
    ctx = click.Context(command, info_name=path)
    options = {name: p for p in command.get_params(ctx) if isinstance(p, click.Option)
               for name in p.opts + p.secondary_opts}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest = args[i + 1:]
            break
        if arg.startswith("-") and arg != "-" and not NUMBER.match(arg):
            name, has_value, value = arg.partition("=")
            if name not in options:
                raise AssertionError(f"`{path}` has no option {name}; it takes {sorted(options)}")
            param = options[name]
            if not param.is_flag and not param.count:
                optional = getattr(param, "_flag_needs_value", False)      # --enable_batching [true|false]
                if not has_value and i + 1 < len(args) and not (optional and args[i + 1].startswith("-")):
                    value, i = args[i + 1], i + 1
                elif not has_value and not optional:
                    raise AssertionError(f"`{path}` option {name} needs a value")
                if value and isinstance(param.type, (click.types._NumberParamTypeBase, click.Choice,
                                                     click.types.BoolParamType)):
                    try:
                        param.type.convert(value, param, ctx)
                    except click.BadParameter as e:
                        raise AssertionError(f"`{path}` option {name}: {e.format_message()}") from None
            i += 1
            continue
        if isinstance(command, click.Group):
            sub = command.get_command(ctx, arg)
            if sub is None:
                raise AssertionError(f"`{path}` has no command {arg!r}; it has {sorted(command.commands)}")
            return _check_click(sub, f"{path} {arg}", args[i + 1:])
        if not command.allow_interspersed_args:      # `launch CMD ...`: the rest is its own command line
            rest = args[i:]
            break
        i += 1
    if command.name == "launch":
        assert rest, f"`{path}` needs a cnnapp command after its options"
        check_cnnapp(rest)


def check_python(args: list[str]) -> None:
    if args[:1] == ["-m"]:
        try:
            found = importlib.util.find_spec(args[1])
        except ModuleNotFoundError:
            found = None
        assert found is not None, f"python -m {args[1]}: no such module"
    elif args[:1] == ["-c"]:
        compile(args[1], "<python -c>", "exec")
    else:
        assert (ROOT / args[0]).is_file(), f"python {args[0]}: no such file in the repository"


def check_make(args: list[str]) -> None:
    targets = set(re.findall(r"^([A-Za-z][\w.-]*):", (ROOT / "Makefile").read_text(), re.M))
    for target in (a for a in args if not a.startswith("-") and "=" not in a):
        assert target in targets, f"make {target}: no such target (the Makefile has {sorted(targets)})"


def check_saved_model_cli(args: list[str]) -> None:
    if "--signature_def" in args:
        assert "--tag_set" in args, "saved_model_cli show --signature_def needs --tag_set serve"
    from tensorflow.python.tools import saved_model_cli
    try:
        saved_model_cli.create_parser().parse_args(args)
    except SystemExit:
        raise AssertionError(f"saved_model_cli does not parse {args}") from None


def check_curl(args: list[str]) -> None:
    urls = []
    i = 0
    while i < len(args):
        if args[i] in ("-d", "-w", "-H", "-X"):
            if args[i] == "-d" and "$(" not in args[i + 1]:
                json.loads(args[i + 1])
            i += 2
            continue
        assert args[i] in ("-s",) or not args[i].startswith("-"), f"curl {args[i]}: not an option this test knows"
        if not args[i].startswith("-"):
            urls.append(args[i])
        i += 1
    assert len(urls) == 1, urls
    path = re.sub(r"^(https?://)?[^/]+", "", urls[0])
    assert ROUTE.match(path), f"curl {urls[0]}: not a route of cnnapp serve"


def check_cd(args: list[str]) -> None:
    assert not any("shared" in Path(a).parts for a in args), \
        "a command changes into ../shared: runs/ and saved_models/ would be written into the shared data"


def check_bash(args: list[str]) -> None:
    """`bash $README_EXAMPLES/NAME.sh` (a make readme marker): a script of docs/readme_examples/ that bash
    can parse; the `$ ` commands it prints are in the block below the marker, checked as any others."""
    assert len(args) == 1 and args[0].startswith("$README_EXAMPLES/"), f"bash {args}: only make readme's example scripts"
    script = ROOT / "docs" / "readme_examples" / args[0].split("/", 1)[1]
    assert script.is_file(), f"{script}: no such script"
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr


CHECKS = {"cnnapp": check_cnnapp, "python": check_python, "python3": check_python, "make": check_make,
          "saved_model_cli": check_saved_model_cli, "curl": check_curl, "cd": check_cd, "bash": check_bash}


def check(text: str) -> None:
    for words in segments(text):
        while words and ENV.match(words[0]):
            words = words[1:]
        if not words:
            continue
        program, args = words[0], words[1:]
        if program in CHECKS:
            CHECKS[program](args)
        else:
            assert program in OTHER_PROGRAMS, f"{program}: a program this test does not know; add a check"


# ---------------------------------------------------------------------------------- the tests

def test_the_readme_shows_commands():
    programs = {segments(c.text)[0][0] for c in COMMANDS}
    assert len(COMMANDS) > 40 and {"cnnapp", "make", "curl", "python", "saved_model_cli"} <= programs, programs


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"line{c.line}")
def test_every_command_parses(command):
    try:
        check(command.text)
    except AssertionError as e:
        raise AssertionError(f"{command}\n  {e}") from None


@pytest.mark.parametrize("bad, fragment", [
    ("python -m cnnapp.data.digits --write-samples samples", "no such module"),
    ("saved_model_cli show --dir saved_models/digits/1 --signature_def serving_default", "needs --tag_set"),
    ("cnnapp train-image --epoch 3", "has no option --epoch"),
    ("cnnapp train-image --epochs", "needs a value"),
    ("cnnapp train-text --epochs three", "not a valid integer"),
    ("cnnapp launch --workers 2 -- train-image --bogus", "`cnnapp train-image` has no option --bogus"),
    ("cnnapp sweep text --stages nope --bogus 1", "has no option --bogus"),
    ("cnnapp serve --model_base_path x --rest-api-prot 1", "has no option --rest-api-prot"),
    ("cd ../shared/data/text/sst2 && cnnapp train-text --data x.tsv", "changes into ../shared"),
    ("make demos", "make demos: no such target"),
    ("curl -s localhost:8501/v2/models/digits", "not a route"),
    ("wget localhost:8501", "a program this test does not know"),
])
def test_the_checks_catch_what_issue_26_found(bad, fragment):
    with pytest.raises(AssertionError, match=re.escape(fragment)):
        check(bad)


def test_the_sst2_recipe_writes_here_and_names_its_classes():
    [recipe] = [c for c in COMMANDS if "glue_sst2_train.tsv" in c.text]
    words = segments(recipe.text)
    assert len(words) == 1 and words[0][:2] == ["cnnapp", "train-text"], recipe
    args = words[0]
    assert args[args.index("--class-names") + 1] == "negative,positive", recipe
    assert "--run-dir" not in args and "--export-base" not in args, recipe      # runs/ and saved_models/ here


def test_output_markers_sit_on_the_blocks_make_readme_fills():
    lines = README.read_text().split("\n")
    marked = [i for i, line in enumerate(lines) if line.strip().startswith("<!-- output")]
    for i in marked:
        assert lines[i + 1].startswith("```"), f"README.md line {i + 1}: a marker not just above a code block"
        if lines[i].strip() == "<!-- output -->":
            assert lines[i + 2].startswith("$ "), f"README.md line {i + 1}: `<!-- output -->` above a block with no `$ `"
    firsts = {lines[i + 2] for i in marked}
    for shown in ("$ cnnapp predict saved_models/digits runs/digits-samples/*.png", "$ cnnapp summary image",
                  "$ cnnapp serve --model-base-path saved_models &"):
        assert shown in firsts, f"`{shown}`: its output block is not pasted by make readme"


# ---------------------------------------------------------------------------------- cheap ones run

@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder as the README's commands expect it: saved_models/digits (ten classes '0'..'9') and
    saved_models/demo-sentences as tiny untrained exports, runs/digits-samples and samples (as
    `make demo` and the README's note under inspect write them)."""
    work = tmp_path_factory.mktemp("readme")
    export_tiny_image_model(work / "saved_models", "digits", class_names=tuple("0123456789"))
    export_tiny_text_model(work / "saved_models", "demo-sentences")
    from cnnapp.data.image.digits import write_samples
    write_samples(work / "runs" / "digits-samples")
    write_samples(work / "samples")
    return work


def _run(text: str, monkeypatch, work: Path) -> tuple[int, str]:
    """Run a README command line in-process in `work`: its first part (cnnapp or python -m), globs expanded;
    a `| tail -N` after it is applied to the output."""
    import runpy
    import sys
    from click.testing import CliRunner
    from cnnapp.cli import cli
    monkeypatch.chdir(work)
    first, *rest = segments(text)
    words = [w for word in first for w in (sorted(glob.glob(word)) if "*" in word else [word])]
    if words[0] == "cnnapp":
        result = CliRunner().invoke(cli, words[1:], catch_exceptions=False)
        code, output = result.exit_code, result.output
    elif words[:2] == ["python", "-m"]:
        monkeypatch.setattr(sys, "argv", [words[2], *words[3:]])
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            runpy.run_module(words[2], run_name="__main__")
        code, output = 0, out.getvalue()
    elif words[0] == "saved_model_cli":
        import contextlib
        import io
        from tensorflow.python.tools import saved_model_cli
        parsed = saved_model_cli.create_parser().parse_args(words[1:])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            parsed.func()
        code, output = 0, out.getvalue()
    else:
        raise AssertionError(f"no runner for {words[0]}")
    for words in rest:
        if words[0] == "tail":
            output = "\n".join(output.rstrip("\n").split("\n")[-int(words[1].lstrip("-")):]) + "\n"
    return code, output


def _readme(text: str) -> Command:
    found = [c for c in COMMANDS if segments(c.text) == segments(text)]       # comments aside
    assert found, f"the README no longer shows `{text}`: update RUNS in tests/test_readme.py"
    return found[0]


def _samples(work, output):
    assert output.split() == ["samples/digit-0.png", "samples/digit-1.png"], output
    assert all((work / path).is_file() for path in output.split())


def _predict_files(work, output):
    assert [line.split(":")[0] for line in output.strip().split("\n")] == \
        [f"runs/digits-samples/digit-{i}.png" for i in range(4)], output


def _predict_json(work, output):
    doc = json.loads(output)
    assert doc["model"] == "saved_models/digits/1" and len(doc["predictions"][0]["top"]) == 2, doc


def _inspect_class(work, output):
    assert "grad-cam '8'" in output and (work / "insp" / "digit-3_gradcam_8.png").is_file(), output


def _predict_sentences(work, output):
    doc = json.loads(output)
    assert [p["input"] for p in doc["predictions"]][2] == "" and len(doc["predictions"][0]["top"]) == 1, doc


def _signature(work, output):
    assert "inputs['image_bytes']" in output and "outputs['scores']" in output, output


def _same_tensors_as_readme(work, output):
    """The abridged explain listing: the README's names and dtypes are the signature's (shapes are the tiny model's)."""
    shown = re.findall(r"((?:in|out)puts\['\w+'\]) (DT_\w+)", "\n".join(_readme(EXPLAIN_SIGNATURE).output))
    real = re.findall(r"((?:in|out)puts\['\w+'\]) tensor_info:\s+dtype: (DT_\w+)", output)
    assert len(shown) > 10 and sorted(shown) == sorted(real), (shown, real)


def _same_as_readme(text):
    def compare(work, output):
        shown = [line for line in _readme(text).output if line]
        assert [line for line in output.split("\n") if line] == shown, \
            f"README.md shows other output for `{text}`: run make readme\n{output}"
    return compare


EXPLAIN_SIGNATURE = "saved_model_cli show --dir saved_models/digits/1 --tag_set serve --signature_def explain"
RUNS = {
    "python -m cnnapp.data.image.digits --write-samples samples --count 2": _samples,
    "cnnapp summary image": _same_as_readme("cnnapp summary image"),
    "cnnapp predict saved_models/digits runs/digits-samples/*.png": _predict_files,
    "cnnapp predict saved_models/digits runs/digits-samples/digit-3.png --json --top-k 2": _predict_json,
    "cnnapp inspect saved_models/digits samples/digit-3.png --class 8 --out insp": _inspect_class,
    'cnnapp predict saved_models/demo-sentences "the soundtrack is a delight ." "her performance is a tedious '
    'mess !" "" --top-k 1 --json': _predict_sentences,
    "saved_model_cli show --dir saved_models/digits/1 --tag_set serve --signature_def serving_default": _signature,
    EXPLAIN_SIGNATURE: _same_tensors_as_readme,
}


@pytest.mark.filterwarnings("ignore:'cnnapp.data.image.digits' found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("text", list(RUNS), ids=lambda t: " ".join(t.split()[:3]))
def test_the_cheap_commands_run(text, scratch, monkeypatch):
    command = _readme(text)
    code, output = _run(command.text, monkeypatch, scratch)
    assert code == 0, f"{command}\nexit {code}:\n{output}"
    RUNS[text](scratch, output)


def test_the_encoding_error_is_what_the_readme_shows(monkeypatch, tmp_path):
    text = "cnnapp train-text --data ../shared/data/text/mr/rt-polarity.all"
    shared_data("text", "mr", "rt-polarity.all")
    (tmp_path / "work").mkdir()
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")           # the README runs beside ../shared
    code, output = _run(_readme(text).text, monkeypatch, tmp_path / "work")
    assert code == 1 and output.rstrip("\n").split("\n") == list(_readme(text).output), output
    assert not (ROOT.parent / "shared" / "data" / "text" / "mr" / "runs").exists()


@pytest.mark.slow
def test_the_first_training_command_runs_with_one_epoch(monkeypatch, tmp_path):
    """`cnnapp train-image` (the embedded digits) as the README shows it, cut to one epoch (with its
    export, 33 s of CPU here: opt-in, `make test-slow`)."""
    command = _readme("cnnapp train-image")
    code, output = _run(command.text + " --epochs 1", monkeypatch, tmp_path)
    assert code == 0 and "exported: saved_models/digits/1" in output, output
    assert (tmp_path / "saved_models" / "digits" / "1" / "saved_model.pb").is_file()
