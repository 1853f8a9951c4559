from __future__ import annotations

import io

import imagehash
from PIL import Image

from descend.crawl.dedup import DuplicateIndex, hamming
from tests.support.fakeweb import picture


def _phash(image: Image.Image) -> int:
    return int(str(imagehash.phash(image)), 16)


def test_exact_and_near_duplicates_are_found_and_distinct_images_are_not() -> None:
    index = DuplicateIndex(max_distance=6)
    assert index.find("a" * 64, 0) is None
    index.add("a" * 64, 0b1011)
    assert index.find("a" * 64, 2**63) == "a" * 64  # same sha wins whatever the hash
    assert index.find("b" * 64, 0b1011 ^ 0b111111) == "a" * 64  # 6 bits apart
    assert index.find("b" * 64, 0b1011 ^ 0b1111111) is None  # 7 bits apart


def test_index_grows_past_its_first_block_and_returns_the_nearest() -> None:
    index = DuplicateIndex(max_distance=6)
    for i in range(200):
        index.add(f"{i:064x}", (i * 0x9E3779B97F4A7C15) % 2**64)
    assert len(index) == 200
    target = (150 * 0x9E3779B97F4A7C15) % 2**64
    assert index.find("f" * 64, target ^ 1) == f"{150:064x}"


def test_threshold_separates_real_variants_from_other_pictures() -> None:
    """The documented margin: re-encodes and resizes stay <= 6 bits, other pictures far."""
    originals = [picture(i) for i in range(30)]
    hashes = [_phash(p) for p in originals]
    far = min(hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:])
    assert far > 12
    for image, h in zip(originals, hashes):
        buf = io.BytesIO()
        image.resize((70, 70)).save(buf, "JPEG", quality=50)
        assert hamming(h, _phash(Image.open(io.BytesIO(buf.getvalue())))) <= 4
