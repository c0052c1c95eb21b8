"""`evo-rl reward ...` commands and the safe reader of TMRL's reward.pkl."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from evo_rl.cli import main
from evo_rl.errors import EvoError
from evo_rl.rewards import read_tmrl_pickle


class RunsCode:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Point:
    def __init__(self) -> None:
        self.x = 1.0


@pytest.fixture(scope="module")
def trajectory() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.cumsum(rng.normal(0, 0.1, (200, 3)), axis=0)  # [200, 3]


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_reader_accepts_numeric_arrays(trajectory: np.ndarray, protocol: int) -> None:
    forms = [
        trajectory,
        trajectory.astype(np.float32),
        np.asfortranarray(trajectory),
        trajectory.astype(">f8"),
        trajectory.tolist(),
        [tuple(r) for r in trajectory.tolist()],
        list(trajectory),  # a list of 1-D arrays
        [[np.float64(v) for v in r] for r in trajectory],  # numpy scalars
    ]
    for obj in forms:
        got = read_tmrl_pickle(pickle.dumps(obj, protocol=protocol))
        np.testing.assert_allclose(got, trajectory, rtol=1e-6, atol=1e-6)
        assert got.dtype == np.float64


@pytest.mark.parametrize(
    "obj, why",
    [
        ({"a": 1.0}, "opcode"),
        (np.array(["a", "b"]), "dtype"),
        (np.array([[1.0, None]], dtype=object), "dtype"),
        ([Point()], "could run code"),
        ("text", "str"),
        ([[1.0, 2.0], [3.0]], "different lengths"),
    ],
)
def test_reader_refuses_other_objects(obj: object, why: str) -> None:
    with pytest.raises(EvoError, match=f"refused.*{why}.*nothing from the file was run"):
        read_tmrl_pickle(pickle.dumps(obj))


def test_reader_never_runs_the_pickle(tmp_path) -> None:
    marker = tmp_path / "ran"
    for payload in (RunsCode(str(marker)), [[1.0, 2.0], RunsCode(str(marker))]):
        with pytest.raises(EvoError, match=r"names posix\.system|names nt\.system"):
            read_tmrl_pickle(pickle.dumps(payload))
    assert not marker.exists()
    with pytest.raises(EvoError, match="not a valid pickle"):
        read_tmrl_pickle(b"\x80\x04garbage")


def test_import_tmrl_command(tmp_path, trajectory: np.ndarray, capsys) -> None:
    src, out = tmp_path / "reward.pkl", tmp_path / "ref.npy"
    src.write_bytes(pickle.dumps(trajectory))
    assert main(["reward", "import-tmrl", str(src), "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out, allow_pickle=False), trajectory)
    assert '"points": 200' in capsys.readouterr().out
    marker = tmp_path / "ran"
    src.write_bytes(pickle.dumps(RunsCode(str(marker))))
    assert main(["reward", "import-tmrl", str(src), "--out", str(tmp_path / "bad.npy")]) == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "bad.npy").exists()


def test_terms_command(capsys) -> None:
    assert main(["reward", "terms"]) == 0
    text = capsys.readouterr().out
    for name in ("progress_trajectory", "checkpoint", "progress_distance", "air_time", "potential_progress"):
        assert name in text
    assert "check_forward" in text and "needs: air" in text


def test_record_and_show_commands(tmp_path, capsys) -> None:
    ref, png = tmp_path / "ref.npy", tmp_path / "ref.png"
    assert main(["reward", "record", "--track", "evo-test", "--out", str(ref)]) == 0
    pts = np.load(ref, allow_pickle=False)
    assert pts.ndim == 2 and pts.shape[1] == 3 and len(pts) > 10
    assert main(["reward", "show", str(ref), "--track", "evo-test", "--out", str(png), "--size", "300"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["reward", "show", str(ref), "--track", "evo-test", "--out", str(tmp_path / "x.jpg")]) == 2
