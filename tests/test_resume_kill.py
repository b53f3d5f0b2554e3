"""A CLI training run killed with SIGKILL at random points, then resumed, ends bit-identical
to an uninterrupted run."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from aekit.training.checkpoint import CHECKPOINT_NAME

MAX_ITER = 150
FIT = ["fit", "vae", "--data", "digits", "-q", "--set", "hidden_layer_sizes=(32,)",
       "--set", f"max_iter={MAX_ITER}", "--set", "random_state=3", "--set", "batch_size=32",
       "--set", f"n_iter_no_change={MAX_ITER}"]


def _aekit(args):
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "aekit", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _checkpoint_epoch(folder):
    import json

    from safetensors import safe_open

    path = folder / CHECKPOINT_NAME
    if not path.exists():
        return 0
    with safe_open(str(path), framework="np") as f:
        return json.loads(f.metadata()["aekit"])["epoch"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    full = _aekit([*FIT, "-o", str(tmp_path / "full.safetensors")])
    assert full.wait(timeout=300) == 0, full.stderr.read().decode()

    run = tmp_path / "run"
    rng = random.Random(0)
    epochs_at_kill = []
    for _ in range(3):
        proc = _aekit([*FIT, "-o", str(tmp_path / "resumed.safetensors"),
                       "--checkpoint-dir", str(run), "--resume"])
        # long enough to get past start-up into training, short enough to kill it there
        deadline = time.monotonic() + 60
        start_epoch = _checkpoint_epoch(run)
        while _checkpoint_epoch(run) <= start_epoch and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        epochs_at_kill.append(_checkpoint_epoch(run))
    print("checkpoint epochs at the kills:", epochs_at_kill)
    assert any(0 < e < MAX_ITER for e in epochs_at_kill), epochs_at_kill
    assert not (tmp_path / "resumed.safetensors").exists()   # no half-written model file

    final = _aekit([*FIT, "-o", str(tmp_path / "resumed.safetensors"),
                    "--checkpoint-dir", str(run), "--resume"])
    assert final.wait(timeout=300) == 0, final.stderr.read().decode()
    a = load_file(str(tmp_path / "full.safetensors"))
    b = load_file(str(tmp_path / "resumed.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
