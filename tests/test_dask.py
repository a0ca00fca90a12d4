"""The Dask recipe (README.md, "On a Dask cluster"): a dataset compressed on a cluster, the
model loaded once per worker, every failure reported for its file, every output whole."""
from pathlib import Path

import pytest
from conftest import smooth_image
from PIL import Image

from rnncodec import batch
from rnncodec.codec import decode

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """One in-process worker with two threads: the cluster machinery without process start-up."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture
def dataset(tmp_path) -> list[tuple[Path, Path]]:
    src = tmp_path / "data"
    src.mkdir()
    for i in range(4):
        Image.fromarray(smooth_image(24, 32, seed=i)).save(src / f"{i}.png")
    (src / "broken.png").write_bytes(b"\x89PNG garbage")
    return batch.plan_folder(src, tmp_path / "out")[0]


def _run(client, tasks, model_dir) -> dict[str, str | None]:
    results = batch.compress_files(tasks, model_path=str(model_dir / "tiny.safetensors"), options={"iterations": 2},
                                   executor=client.get_executor(pure=False))
    return {src.name: error for src, error in results}


def test_dataset_on_dask(client, dataset, model_dir):
    errors = _run(client, dataset, model_dir)
    assert sorted(errors) == ["0.png", "1.png", "2.png", "3.png", "broken.png"]
    assert [name for name, error in errors.items() if error] == ["broken.png"]  # the others went on
    out = dataset[0][1].parent
    assert sorted(p.name for p in out.iterdir()) == ["0.png.rnc", "1.png.rnc", "2.png.rnc", "3.png.rnc"]  # no .part
    assert all(decode(p.read_bytes()).pixels.shape == (24, 32, 3) for p in out.iterdir())
    assert set(client.run(lambda: batch.worker_backend.cache_info().misses).values()) == {1}  # once per worker


def test_a_task_that_crashes_is_reported_for_its_file(client, dataset, model_dir, monkeypatch):
    real = batch.read_image

    def crashing(path, **kw):
        if path.name == "2.png":
            raise RuntimeError("worker bug")
        return real(path, **kw)

    monkeypatch.setattr(batch, "read_image", crashing)  # in-process workers see the patch
    errors = _run(client, dataset, model_dir)
    assert errors["2.png"].endswith("2.png: RuntimeError: worker bug")
    assert sorted(name for name, error in errors.items() if error) == ["2.png", "broken.png"]
    assert not (dataset[2][1]).exists() and dataset[3][1].exists()
