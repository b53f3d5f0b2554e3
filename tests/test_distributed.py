"""DistributedDataParallel through torchrun (gloo on CPU), against one process."""

import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

COMMON = ["--data", "digits", "-q", "--set", "hidden_layer_sizes=(32,)", "--set",
          "random_state=0", "--set", "batch_size=64", "--set", "n_iter_no_change=100"]


def _run(args, n_proc, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if n_proc == 1:
        cmd = [sys.executable, "-m", "aekit", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n_proc}",
               "--standalone", "-m", "aekit", *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _weights(path):
    return load_file(str(path))


@pytest.mark.parametrize("model, extra", [
    ("ae", []), ("vae", []),
    # a VampPrior on z2: its pseudo-inputs are parameters that every rank trains
    ("hvae", ["--set", "n_components=4", "--set", "n_pseudo_inputs=5"]),
])
def test_two_processes_match_one_process(tmp_path, model, extra):
    args = ["fit", model, *COMMON, *extra, "--set", "max_iter=4"]
    _run([*args, "-o", str(tmp_path / "one.safetensors")], 1)
    _run([*args, "-o", str(tmp_path / "two.safetensors")], 2)
    one, two = _weights(tmp_path / "one.safetensors"), _weights(tmp_path / "two.safetensors")
    assert one.keys() == two.keys()
    if model == "ae":      # no noise: the same global batches give the same weights
        for name in one:
            np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
    else:                  # each rank draws its own noise: close, not equal
        diff = max(float(np.abs(two[k] - one[k]).max()) for k in one)
        assert diff < 0.5
    assert not list(tmp_path.glob("*.tmp"))


def test_two_processes_train_a_saved_model_on_like_one_process(tmp_path):
    """--warm-start under torchrun: every rank starts from the file's weights."""
    start = tmp_path / "start.safetensors"
    _run(["fit", "ae", *COMMON, "--set", "max_iter=3", "-o", str(start)], 1)
    args = ["fit", "--warm-start", str(start), *COMMON, "--set", "max_iter=2",
            "--set", "learning_rate=3e-4"]
    _run([*args, "-o", str(tmp_path / "one.safetensors")], 1)
    _run([*args, "-o", str(tmp_path / "two.safetensors")], 2)
    begin, one = _weights(start), _weights(tmp_path / "one.safetensors")
    two = _weights(tmp_path / "two.safetensors")
    assert one.keys() == two.keys() == begin.keys()
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert any(not np.array_equal(one[k], begin[k]) for k in one)     # it trained on,
    # from the file's weights: 46 Adam steps of 3e-4 move a weight by at most 0.014
    moved = {k: float(np.abs(two[k] - begin[k]).max()) for k in two if "coder." in k}
    assert moved and max(moved.values()) < 0.02, moved


def test_ddp_resume_matches_an_uninterrupted_ddp_run(tmp_path):
    args = ["fit", "vae", *COMMON]
    _run([*args, "--set", "max_iter=4", "-o", str(tmp_path / "full.safetensors"),
          "--checkpoint-dir", str(tmp_path / "full")], 2)
    _run([*args, "--set", "max_iter=2", "-o", str(tmp_path / "half.safetensors"),
          "--checkpoint-dir", str(tmp_path / "run")], 2)
    _run([*args, "--set", "max_iter=4", "-o", str(tmp_path / "resumed.safetensors"),
          "--checkpoint-dir", str(tmp_path / "run"), "--resume"], 2)
    full = _weights(tmp_path / "full.safetensors")
    resumed = _weights(tmp_path / "resumed.safetensors")
    for name in full:
        np.testing.assert_array_equal(resumed[name], full[name], err_msg=name)


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    args = ["fit", "ae", *COMMON, "--set", "max_iter=1", "-o", str(tmp_path / "m.safetensors"),
            "--checkpoint-dir", str(tmp_path / "run")]
    _run(args, 2)
    out = subprocess.run([sys.executable, "-m", "aekit", *args, "--resume"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert "written by 2 process(es) and this run has 1" in out.stderr


def test_two_processes_stream_a_file_like_one_process_in_memory(tmp_path, digits):
    """DDP on a streamed .npy (each rank reads only its rows) ends where one process with
    the array in memory ends."""
    path = tmp_path / "x.npy"
    np.save(path, digits[0])
    args = ["fit", "ae", *COMMON, "--set", "max_iter=3"]
    _run([*args, "-o", str(tmp_path / "one.safetensors")], 1)
    _run([*args[:2], "--data", str(path), "--memory-budget", "1K", *args[4:],
          "-o", str(tmp_path / "two.safetensors")], 2)
    one, two = _weights(tmp_path / "one.safetensors"), _weights(tmp_path / "two.safetensors")
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_sharded_transform_and_score_match_one_process(tmp_path, digits):
    path = tmp_path / "x.npy"
    np.save(path, digits[0][:1001])             # rows do not split evenly over the ranks
    model = tmp_path / "m.safetensors"
    _run(["fit", "vae", *COMMON, "--set", "max_iter=1", "-o", str(model)], 1)
    for n_proc in (1, 2):
        _run(["transform", str(model), "--data", str(path), "--memory-budget", "1K",
              "-o", str(tmp_path / f"codes{n_proc}.npy")], n_proc)
        _run(["score", str(model), "--data", str(path), "-o",
              str(tmp_path / f"ll{n_proc}.npy")], n_proc)
    np.testing.assert_array_equal(np.load(tmp_path / "codes2.npy"),
                                  np.load(tmp_path / "codes1.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "ll2.npy"), np.load(tmp_path / "ll1.npy"))
    assert np.load(tmp_path / "codes2.npy").shape == (1001, 2)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_killed_ddp_run_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL to torchrun and both workers after the first checkpoint, then --resume."""
    import signal
    import time

    from tests.test_resume_kill import _checkpoint_epoch

    args = ["fit", "vae", *COMMON, "--set", "max_iter=40"]
    _run([*args, "-o", str(tmp_path / "full.safetensors")], 2)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "aekit", *args, "-o", str(tmp_path / "resumed.safetensors"),
           "--checkpoint-dir", str(run)]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _checkpoint_epoch(run) < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _checkpoint_epoch(run)
    assert 2 <= killed_at < 40, killed_at
    assert not (tmp_path / "resumed.safetensors").exists()
    _run([*args, "-o", str(tmp_path / "resumed.safetensors"), "--checkpoint-dir", str(run),
          "--resume"], 2)
    full = _weights(tmp_path / "full.safetensors")
    resumed = _weights(tmp_path / "resumed.safetensors")
    for name in full:
        np.testing.assert_array_equal(resumed[name], full[name], err_msg=name)


RECORD_ROWS = """
import sys, numpy as np, torch
torch.set_num_threads(1)
import aekit
from aekit.training.distributed import finish

class Recording(aekit.VAE):
    def _loss(self, x, y, ctx):
        if self.module_.training:
            self._seen.extend((ctx.epoch, int(round(float(r) * 1000))) for r in x[:, 0])
        return super()._loss(x, y, ctx)

X = np.random.default_rng(0).random((105, 6)).astype(np.float32)
X[:, 0] = np.arange(105) / 1000                  # the row's number, read back from x
model = Recording(hidden_layer_sizes=(8,), max_iter=3, batch_size=10, random_state=0)
model._seen = []
model.fit(X)
np.save(sys.argv[1] + f"/rank{torch.distributed.get_rank()}.npy", np.array(model._seen))
finish()
"""


def test_every_rank_draws_the_same_order_while_the_noise_differs(tmp_path):
    """Uneven shards (105 rows, batch 10: the last batch splits 3 / 2) make the ranks draw
    different amounts of noise; each epoch must still cover every row exactly once."""
    script = tmp_path / "record.py"
    script.write_text(RECORD_ROWS)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--standalone", str(script), str(tmp_path)],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = np.concatenate([np.load(tmp_path / f"rank{r}.npy") for r in (0, 1)])
    for epoch in (1, 2, 3):
        rows = np.sort(seen[seen[:, 0] == epoch, 1])
        np.testing.assert_array_equal(rows, np.arange(105), err_msg=f"epoch {epoch}")


VQ_SCRIPT = """
import sys, numpy as np, torch
torch.set_num_threads(1)
import aekit
from aekit.training.distributed import finish

X, _ = aekit.datasets.load("digits", split="train")
common = dict(n_components=3, codebook_size=16, hidden_layer_sizes=(16,), max_iter=3,
              batch_size=64, random_state=0, device="cpu")
plain = aekit.VQVAE(dead_code_threshold=0.0, **common).fit(X)
resets = aekit.VQVAE(**common).fit(X)
rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
np.savez(sys.argv[1] + f"/rank{rank}.npz",
         **{k: v.numpy() for k, v in plain.module_.state_dict().items()},
         resets_codebook=resets.module_.codebook.numpy(),
         resets_count=resets.module_.ema_count.numpy())
finish()
"""


def test_vqvae_codebook_follows_the_global_minibatch_on_every_rank(tmp_path):
    """Under DDP the EMA statistics of every rank's share are all-reduced (no broadcast of
    rank 0's buffers): without dead-code resets 2 processes end where 1 does, and with
    them (rank 0's replacement rows) every rank holds the same codebook."""
    script = tmp_path / "vq.py"
    script.write_text(VQ_SCRIPT)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--standalone", str(script), str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    single = np.load(tmp_path / "one" / "rank0.npz")
    ranks = [np.load(tmp_path / "two" / f"rank{r}.npz") for r in (0, 1)]
    for name in single.files:
        if not name.startswith("resets"):
            np.testing.assert_allclose(ranks[0][name], single[name], rtol=1e-4, atol=1e-5,
                                       err_msg=name)
    for name in ("codebook", "ema_count", "ema_sum", "resets_codebook", "resets_count"):
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name], err_msg=name)


def test_two_processes_draw_the_same_tsne_map_as_one(tmp_path):
    pytest.importorskip("openTSNE")
    args = ["fit", "neighbor_ae", *COMMON, "--set", "max_iter=3", "--set", "embedding=tsne"]
    _run([*args, "-o", str(tmp_path / "one.safetensors")], 1)
    _run([*args, "-o", str(tmp_path / "two.safetensors")], 2)
    one, two = _weights(tmp_path / "one.safetensors"), _weights(tmp_path / "two.safetensors")
    # every rank computes the map from the shared stream's seed: the same map, bit for bit
    np.testing.assert_array_equal(two["reference_codes"], one["reference_codes"])
    np.testing.assert_array_equal(two["reference_rows"], one["reference_rows"])
    for name in one:        # and the networks learn it from the same global batches
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
