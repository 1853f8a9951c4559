import os
import stat
from pathlib import Path

import pytest
import torch

from descend.data.datasets import load_dataset
from descend.data.loader import channel_stats
from descend.data.splits import stratified_split
from descend.errors import ConfigError, DataError
from descend.registry import Registry


def test_flat_folder_gets_a_stratified_deterministic_split(image_folder: Path) -> None:
    a = load_dataset(f"imagefolder:{image_folder}", image_size=16, seed=3)
    b = load_dataset(f"imagefolder:{image_folder}", image_size=16, seed=3)
    c = load_dataset(f"imagefolder:{image_folder}", image_size=16, seed=4)
    assert a.classes == ["blue", "green", "red"]
    assert a.train.class_counts(3) == [16, 16, 16] and a.val.class_counts(3) == [4, 4, 4]
    assert a.val.paths == b.val.paths and a.val.paths != c.val.paths
    assert not set(a.train.paths) & set(a.val.paths)
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape[1:] == (3, 16, 16)


def test_split_layout_uses_its_val_and_test(split_folder: Path) -> None:
    d = load_dataset(f"imagefolder:{split_folder}", image_size=16)
    assert (len(d.train), len(d.val), len(d.test)) == (48, 12, 12)
    assert "val" in d.val_source


def test_stratified_split_keeps_small_classes_on_both_sides() -> None:
    labels = torch.tensor([0] * 10 + [1] * 2)
    train, val = stratified_split(labels, 0.2, seed=0)
    assert sorted(labels[val].tolist()) == [0, 0, 1]
    assert len(train) + len(val) == 12


def test_images_are_resized_to_the_training_size(image_folder: Path) -> None:
    d = load_dataset(f"imagefolder:{image_folder}", image_size=24)
    assert d.image_size == (24, 24)


def test_one_class_folder_is_refused(tmp_path: Path, make_images) -> None:
    make_images(tmp_path / "only" / "cats", (100, 100, 100), 5)
    with pytest.raises(DataError, match="at least 2 class folders"):
        load_dataset(f"imagefolder:{tmp_path / 'only'}")


def test_empty_folder_and_missing_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="0 class"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


def test_loose_files_without_class_folders_say_how_to_lay_them_out(tmp_path: Path,
                                                                    make_images) -> None:
    make_images(tmp_path / "loose", (10, 10, 10), 3)
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(f"imagefolder:{tmp_path / 'loose'}")


def test_empty_class_folder_is_skipped_with_a_note(image_folder: Path) -> None:
    (image_folder / "empty_class").mkdir()
    d = load_dataset(f"imagefolder:{image_folder}", image_size=16)
    assert "empty_class" not in d.classes
    assert any("empty_class" in n for n in d.notes)


def test_bad_files_are_skipped_and_listed_or_fail_with_strict(image_folder: Path) -> None:
    whole = (image_folder / "red" / "img_000.png").read_bytes()
    (image_folder / "red" / "broken.png").write_bytes(whole[: len(whole) // 2])  # truncated
    (image_folder / "red" / "empty.jpg").write_bytes(b"")
    (image_folder / "red" / "notes.txt").write_text("not an image")
    (image_folder / "red" / ".hidden.png").write_text("ignored")
    d = load_dataset(f"imagefolder:{image_folder}", image_size=16)
    reasons = {Path(s["path"]).name: s["reason"] for s in d.skipped}
    assert reasons == {"broken.png": "corrupt", "empty.jpg": "empty", "notes.txt": "not-an-image"}
    assert len(d.train) + len(d.val) == 60
    with pytest.raises(DataError, match=r"(?s)--strict: 3 file.*broken.png"):
        load_dataset(f"imagefolder:{image_folder}", image_size=16, strict=True)


def test_cache_is_reused_and_rebuilt_when_files_change(image_folder: Path,
                                                       isolated_cache: Path) -> None:
    load_dataset(f"imagefolder:{image_folder}", image_size=16)
    entries = list((isolated_cache / "decoded").glob("*.pt"))
    assert len(entries) == 1
    mtime = entries[0].stat().st_mtime_ns
    load_dataset(f"imagefolder:{image_folder}", image_size=16)
    assert entries[0].stat().st_mtime_ns == mtime  # reused, not rewritten
    (image_folder / "red" / "img_000.png").unlink()
    d = load_dataset(f"imagefolder:{image_folder}", image_size=16)
    assert len(list((isolated_cache / "decoded").glob("*.pt"))) == 2
    assert len(d.train) + len(d.val) == 59


def test_read_only_data_root_works(image_folder: Path) -> None:
    modes = {}
    for p in [image_folder, *image_folder.rglob("*")]:
        modes[p] = p.stat().st_mode
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        before = sorted(str(p) for p in image_folder.rglob("*"))
        d = load_dataset(f"imagefolder:{image_folder}", image_size=16)
        assert len(d.train) == 48
        assert sorted(str(p) for p in image_folder.rglob("*")) == before
    finally:
        for p, m in modes.items():
            p.chmod(m)


def test_missing_public_dataset_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"not found in {tmp_path}.*--data-root"):
        load_dataset("mnist", root=tmp_path, download=False)
    with pytest.raises(DataError, match="cifar10"):
        load_dataset("cifar10", root=tmp_path, download=False)


def test_unknown_dataset_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="cifar10-sample.*imagefolder.*mnist"):
        load_dataset("imagenet")


def test_builtin_sample() -> None:
    d = load_dataset("cifar10-sample")
    assert (len(d.train), len(d.test), d.image_size) == (3000, 800, (32, 32))
    assert d.train.class_counts(10) == [300] * 10
    assert d.classes[0] == "airplane"
    assert d.train.images.float().std() > 20  # real pixels, not zeros


def test_registry_refuses_a_name_twice() -> None:
    r: Registry[int] = Registry("thing")
    r.register("a")(1)
    with pytest.raises(ValueError):
        r.register("a")(2)


def test_real_mnist(real_data: Path) -> None:
    d = load_dataset("mnist", root=real_data, download=False)
    assert (len(d.train), len(d.val), d.channels, d.image_size) == (60000, 10000, 1, (28, 28))
    assert d.val_source == "the test split"


@pytest.mark.skipif(os.name == "nt", reason="POSIX paths")
def test_real_cifar10_class_folders(real_data: Path, shared_cache: Path) -> None:
    d = load_dataset("cifar10", root=real_data, cache=shared_cache, download=False,
                     progress=False)
    assert (len(d.train), len(d.val)) == (50000, 10000)
    assert d.classes[:3] == ["airplane", "automobile", "bird"]
    mean, std = channel_stats(d.train.images)
    assert torch.allclose(torch.tensor(mean), torch.tensor([0.4914, 0.4822, 0.4465]), atol=1e-3)
    assert torch.allclose(torch.tensor(std), torch.tensor([0.2470, 0.2435, 0.2616]), atol=1e-3)


def test_the_geometry_decides_the_decoding_size(image_folder: Path) -> None:
    d = load_dataset(f"imagefolder:{image_folder}", resize=20, center_crop=12, progress=False)
    assert d.image_size == (12, 12)
    sample = load_dataset("cifar10-sample", center_crop=24)
    assert sample.image_size == (24, 24)
    full = load_dataset("cifar10-sample")
    # CenterCrop on tensors: the centred 24x24 of the 32x32 pixels, unscaled
    assert torch.equal(sample.train.images[:5], full.train.images[:5, :, 4:28, 4:28])
    big = load_dataset("cifar10-sample", image_size=48)
    assert big.image_size == (48, 48) and big.train.images.float().std() > 20


def test_memory_budget_decides_between_decoding_and_listing(image_folder: Path,
                                                            monkeypatch) -> None:  # noqa: ANN001
    from descend.data.splits import ImageFiles

    d = load_dataset(f"imagefolder:{image_folder}", image_size=16, memory_budget=0)
    assert isinstance(d.train, ImageFiles) and isinstance(d.val, ImageFiles)
    assert d.image_size == (16, 16) and d.channels == 3 and len(d.train) == 48
    monkeypatch.setenv("DESCEND_MEMORY_BUDGET", "1G")
    assert load_dataset(f"imagefolder:{image_folder}", image_size=16).in_memory


def test_train_streams_and_says_so(image_folder: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A run over a dataset beyond the memory budget trains from the streaming loader, with
    the same result as from memory (the loaders give identical batches)."""
    from descend.runtime.checkpoint import read_checkpoint
    from descend.training.trainer import train

    cfg = dict(data=f"imagefolder:{image_folder}", model="mlp", epochs=2, batch_size=8,
               image_size=16, progress=False, download=False, lr=0.05, deterministic=True)
    train(out=str(tmp_path / "mem"), **cfg)
    monkeypatch.setenv("DESCEND_MEMORY_BUDGET", "0")
    train(out=str(tmp_path / "stream"), **cfg)
    log = (tmp_path / "stream" / "train.log").read_text()
    assert "input pipeline: streaming from 48 files" in log
    assert "input pipeline: in-memory" in (tmp_path / "mem" / "train.log").read_text()
    a = read_checkpoint(tmp_path / "mem" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "stream" / "last.pt")["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_real_cifar10_second_load_maps_the_cache(real_data: Path, shared_cache: Path) -> None:
    """The later load reads the cache entry (not rewritten, memory-mapped), same pixels."""
    a = load_dataset("cifar10", root=real_data, cache=shared_cache, download=False,
                     progress=False)
    entries = {p: p.stat().st_mtime_ns for p in (shared_cache / "decoded").glob("*.pt")}
    assert len(entries) >= 2  # train and test folders (and whatever else shares the cache)
    b = load_dataset("cifar10", root=real_data, cache=shared_cache, download=False,
                     progress=False)
    assert {p: p.stat().st_mtime_ns for p in entries} == entries
    assert torch.equal(a.train.images[::997], b.train.images[::997])
    maps = Path("/proc/self/maps")
    if maps.is_file():
        assert all(str(p) in maps.read_text() for p in entries)


def test_real_mnist_at_another_size(real_data: Path) -> None:
    d = load_dataset("mnist", root=real_data, download=False, image_size=32)
    assert d.image_size == (32, 32) and d.channels == 1
    assert d.train.images.dtype == torch.uint8 and d.train.images[:100].float().mean() > 20


def test_process_and_thread_decoding_agree(image_folder: Path, monkeypatch) -> None:  # noqa: ANN001
    import descend.data.folder as folder
    from descend.data.cache import scan_files

    (image_folder / "red" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths = [f.path for c in ("blue", "red") for f in scan_files(image_folder / c)]
    monkeypatch.setattr(folder, "PROCESS_MIN_FILES", 0)
    by_processes = folder.decode_files(paths, (8, 8), 3, progress=False, workers=2)
    monkeypatch.setattr(folder, "PROCESS_MIN_FILES", 10**9)
    by_threads = folder.decode_files(paths, (8, 8), 3, progress=False, workers=2)
    for a, b in zip(by_processes[:3], by_threads[:3]):
        assert (a == b).all()
    assert by_processes[3] == by_threads[3] and len(by_threads[3]) == 1
    assert int(by_threads[1].sum()) == 40


def test_entries_say_whether_their_images_may_be_mirrored_and_give_the_help() -> None:
    from descend.data.datasets import DATASETS, datasets_help, may_mirror, mirroring_help

    assert not may_mirror("mnist") and may_mirror("fashion-mnist") and may_mirror("cifar10")
    assert may_mirror("imagefolder:/some/photos") and may_mirror("not-a-dataset")
    assert datasets_help().startswith("mnist, fashion-mnist, cifar10, cifar10-sample")
    assert all(DATASETS.get(name).usage in datasets_help() for name in DATASETS)
    assert mirroring_help().startswith("no mirroring for mnist")
    assert DATASETS.get("imagefolder").usage == "imagefolder:PATH"


def test_name_list_joins_and_folds_names_that_differ_in_a_last_digit() -> None:
    from descend.registry import name_list

    assert name_list(["a", "b", "c"]) == "a, b or c" and name_list(["a"]) == "a"
    assert name_list(["x0", "x1", "x2", "y"], "and") == "x0/1/2 and y"
    assert name_list([]) == ""
