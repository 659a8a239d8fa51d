"""The fast (batched, on-device) and reference (per-image torchvision v2) paths compute the same thing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baseline.data import (
    FastData,
    ReferenceData,
    epoch_plan,
    global_batches,
    rank_slice,
    stratified_split,
)
from baseline.transforms import (
    TransformSpec,
    draw_augmentation,
    fast_eval_batch,
    fast_train_batch,
    reference_eval_image,
    reference_train_image,
)
from tests.reference_impls import course_train_transform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
COURSE_SPEC = TransformSpec(224, 28, MEAN, STD, 0.5)  # the course notes' recipe at CIFAR's 32 px input


def random_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def as_nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("spec", [COURSE_SPEC, TransformSpec(32, 4, MEAN, STD, 0.5), TransformSpec(20, 3, MEAN, STD, 1.0)],
                         ids=["seed-224-pad28", "32-pad4", "downscale-20"])
def test_train_paths_agree_with_the_same_crops_and_flips(spec):
    images = random_images(12)
    aug = draw_augmentation(12, spec, np.random.default_rng(1))
    # cover the corners of the offset range and both flip choices explicitly
    aug.top[:4], aug.left[:4] = [0, 2 * spec.padding, 0, 2 * spec.padding], [0, 0, 2 * spec.padding, 2 * spec.padding]
    aug.flip[:4] = [True, False, True, False]
    fast = fast_train_batch(as_nchw(images), torch.from_numpy(aug.top), torch.from_numpy(aug.left),
                            torch.from_numpy(aug.flip), spec)
    reference = torch.stack([
        reference_train_image(torch.from_numpy(img).permute(2, 0, 1), aug.top[i], aug.left[i], bool(aug.flip[i]), spec)
        for i, img in enumerate(images)
    ])
    assert fast.shape == reference.shape == (12, 3, spec.size, spec.size)
    assert (fast - reference).abs().max().item() <= 1e-4  # in fact the same float computation


def test_cpu_chunks_give_the_same_batch(monkeypatch):
    import baseline.transforms as T

    images = as_nchw(random_images(20, seed=8))
    aug = draw_augmentation(20, COURSE_SPEC, np.random.default_rng(2))
    args = (torch.from_numpy(aug.top), torch.from_numpy(aug.left), torch.from_numpy(aug.flip))
    chunked = T.fast_train_batch(images, *args, COURSE_SPEC)
    monkeypatch.setattr(T, "CPU_CHUNK", 1000)
    whole = T.fast_train_batch(images, *args, COURSE_SPEC)
    assert torch.equal(chunked, whole)


def test_fast_data_serves_channels_last_when_asked():
    images, labels = random_images(6), np.arange(6)
    spec = TransformSpec(32, 4, MEAN, STD, 0.5)
    data = FastData(images, labels, spec, torch.device("cpu"), channels_last=True)
    batch = next(data.train_batches(epoch_plan(6, spec, 0, 1), 4))
    assert batch.x.is_contiguous(memory_format=torch.channels_last)
    assert next(data.eval_batches(4)).x.is_contiguous(memory_format=torch.channels_last)


def test_eval_paths_agree():
    images = random_images(10, seed=3)
    fast = fast_eval_batch(as_nchw(images), COURSE_SPEC)
    reference = torch.stack([reference_eval_image(torch.from_numpy(i).permute(2, 0, 1), COURSE_SPEC) for i in images])
    assert fast.shape == (10, 3, 224, 224)
    assert (fast - reference).abs().max().item() <= 1e-4  # the same float computation, like the train path


def test_crop_and_flip_do_what_they_say():
    # no resize, padding 2: the crop at (2, 2) is the image itself; at (0, 0) it is shifted with zero rows
    spec = TransformSpec(8, 2, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 0.5)
    image = as_nchw(random_images(1, size=8, seed=5))
    plain = image.float() / 255
    same = fast_train_batch(image, torch.tensor([2]), torch.tensor([2]), torch.tensor([False]), spec)
    assert torch.allclose(same, plain)
    flipped = fast_train_batch(image, torch.tensor([2]), torch.tensor([2]), torch.tensor([True]), spec)
    assert torch.allclose(flipped, plain.flip(3))
    shifted = fast_train_batch(image, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]), spec)
    assert torch.all(shifted[..., :2, :] == 0) and torch.all(shifted[..., :, :2] == 0)
    assert torch.allclose(shifted[..., 2:, 2:], plain[..., :6, :6])


def test_the_seeds_v2_compose_is_one_of_the_reference_outputs():
    """torchvision's own RandomCrop(padding)/RandomHorizontalFlip give an output of the reference
    function for some crop offset and flip: the reference path is the course notes' transform."""
    spec = TransformSpec(16, 2, MEAN, STD, 0.5)
    image = torch.from_numpy(random_images(1, size=12, seed=9)[0]).permute(2, 0, 1)
    candidates = {
        (t, l, f): reference_train_image(image, t, l, f, spec)
        for t in range(5) for l in range(5) for f in (False, True)
    }
    torch.manual_seed(0)
    transform = course_train_transform(spec)
    hits = set()
    for _ in range(20):
        out = transform(image)
        matches = [k for k, v in candidates.items() if torch.allclose(out, v, atol=1e-5)]
        assert matches, "v2's random crop/flip produced something the reference function cannot"
        hits.update(matches)
    assert len(hits) > 3  # and it really was random


def test_augmentation_ranges():
    aug = draw_augmentation(5000, COURSE_SPEC, np.random.default_rng(0))
    assert aug.top.min() == 0 and aug.top.max() == 56 and aug.left.max() == 56
    assert 0.45 < aug.flip.mean() < 0.55
    none = draw_augmentation(100, TransformSpec(32, 0, MEAN, STD, 0.0), np.random.default_rng(0))
    assert not none.top.any() and not none.flip.any()


def test_both_data_paths_serve_the_same_batches():
    images, labels = random_images(50, seed=4), np.arange(50) % 10
    spec = TransformSpec(24, 3, MEAN, STD, 0.5)
    cpu = torch.device("cpu")
    fast, reference = FastData(images, labels, spec, cpu, channels_last=False), ReferenceData(images, labels, spec, cpu)
    plan = epoch_plan(50, spec, seed=11, epoch=2)
    pairs = list(zip(fast.train_batches(plan, 16), reference.train_batches(plan, 16)))
    assert len(pairs) == 4  # 16+16+16+2
    for a, b in pairs:
        assert torch.equal(a.y, b.y) and a.global_size == b.global_size
        assert (a.x - b.x).abs().max().item() <= 1e-4
    evals = list(zip(fast.eval_batches(20), reference.eval_batches(20)))
    assert [len(a.y) for a, _ in evals] == [20, 20, 10]
    for a, b in evals:
        assert torch.equal(a.y, b.y) and (a.x - b.x).abs().max().item() <= 1e-4


def test_unlabeled_eval_batches_carry_no_labels():
    images, spec, cpu = random_images(5), TransformSpec(32, 4, MEAN, STD, 0.5), torch.device("cpu")
    for data in (FastData(images, None, spec, cpu), ReferenceData(images, None, spec, cpu)):
        batches = list(data.eval_batches(3))
        assert [b.x.shape[0] for b in batches] == [3, 2] and all(b.y.numel() == 0 for b in batches)


def test_epoch_plans_are_seeded():
    spec = TransformSpec(32, 4, MEAN, STD, 0.5)
    a, b, c = epoch_plan(100, spec, 1, 1), epoch_plan(100, spec, 1, 1), epoch_plan(100, spec, 1, 2)
    assert np.array_equal(a.order, b.order) and np.array_equal(a.augmentation.top, b.augmentation.top)
    assert not np.array_equal(a.order, c.order)
    assert sorted(a.order.tolist()) == list(range(100))


def test_global_batches_and_rank_shares():
    assert global_batches(300, 128, 1) == [(0, 128), (128, 256), (256, 300)]
    assert global_batches(257, 128, 1) == [(0, 128), (128, 256)]  # a last batch of 1 cannot train BatchNorm
    assert global_batches(259, 128, 2) == [(0, 128), (128, 256)]  # 3 images cannot give 2 to each of 2
    shares = [rank_slice(128, 200, r, 3) for r in range(3)]
    assert shares == [(128, 152), (152, 176), (176, 200)]
    shares = [rank_slice(0, 10, r, 4) for r in range(4)]
    assert [hi - lo for lo, hi in shares] == [3, 3, 2, 2] and shares[0][0] == 0 and shares[-1][1] == 10


def test_stratified_split():
    labels = np.repeat(np.arange(5), [100, 50, 30, 20, 10])
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    assert np.bincount(labels[val]).tolist() == [10, 5, 3, 2, 1]
    again, val2 = stratified_split(labels, 0.1, seed=3)
    assert np.array_equal(val, val2)
    assert not np.array_equal(val, stratified_split(labels, 0.1, seed=4)[1])
    full, none = stratified_split(labels, 0.0, seed=3)
    assert len(full) == len(labels) and len(none) == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fast_path_on_cuda_agrees_with_the_cpu_reference():
    images, labels = random_images(40, seed=6), np.arange(40) % 10
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    fast, reference = FastData(images, labels, COURSE_SPEC, cuda), ReferenceData(images, labels, COURSE_SPEC, cpu)
    plan = epoch_plan(40, COURSE_SPEC, seed=1, epoch=1)
    for a, b in zip(fast.train_batches(plan, 16), reference.train_batches(plan, 16)):
        assert a.x.is_cuda and a.x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a.y.cpu(), b.y) and (a.x.cpu() - b.x).abs().max().item() <= 1e-2
    for a, b in zip(fast.eval_batches(16), reference.eval_batches(16)):
        assert (a.x.cpu() - b.x).abs().max().item() <= 1e-2
