"""Every bad input of the issue fails with an error that names the problem and the fix."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset

from fixtures_data import make_cub200_tree
from rkd import data, models
from rkd.data import DatasetLayoutError, ImageReadError, MPerClassSampler
from rkd.distill import Distiller
from rkd.experiments import ParameterError, get, notebook_parameters
from rkd.losses.terms import TermContext
from rkd.methods import get_method
from rkd.registry import UnknownNameError
from rkd.runtime import safe_torch_load
from rkd.train import NonFiniteLossError, TrainConfig, fit

# ----------------------------------------------------------------------------- names


def test_unknown_dataset_model_and_method_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'cub'; valid names: cars196, cifar100, cub200, "):
        data.get_dataset("cub", None, "train")
    with pytest.raises(UnknownNameError, match=r"unknown model 'resnet19'; valid names: .*resnet18, "):
        models.build_model("resnet19")
    with pytest.raises(UnknownNameError, match=r"unknown method 'RKD-X'; valid methods for 'metric': .*RKD-DA, RRD"):
        get_method("RKD-X", task="metric")
    with pytest.raises(UnknownNameError, match=r"method 'HKD' is not defined for task 'metric'"):
        get_method("HKD", task="metric")
    with pytest.raises(ValueError, match=r"unknown Table 1 method\(s\) \['RKD'\]; valid: Triplet, FitNet"):
        get("table1").plan(methods=("RKD",))
    with pytest.raises(ValueError, match="unknown scale 'huge' for Table 1; valid scales: "):
        get("table1").plan(scale="huge")
    with pytest.raises(UnknownNameError, match="unknown optimizer 'adamw'; valid names: adam, sgd"):
        TrainConfig(steps=1, optimizer="adamw")


# ----------------------------------------------------------------------------- data


def test_data_root_missing_or_in_the_wrong_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"cub200: the root folder does not exist(.|\n)*Expected layout"
                                                 r"(.|\n)*Get the data: CUB_200_2011.tgz"):
        data.get_dataset("cub200", tmp_path / "missing", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"cub200: 'images.txt' not found \(looked for "):
        data.get_dataset("cub200", tmp_path / "empty", "train")
    with pytest.raises(DatasetLayoutError, match="cars196: no root given"):
        data.get_dataset("cars196", None, "train")
    # and through an experiment at paper scale, with its data_root: checked as a whole first
    with pytest.raises(DatasetLayoutError, match=r"cub200 +NOT READY .*CUB_200_2011 not found(.|\n)*"
                                                 r"cars196 +NOT READY(.|\n)*python -m rkd.data check"):
        get("table1").run(scale="paper", data_root=str(tmp_path / "missing"), progress=False,
                          cache_dir=str(tmp_path / "cache"))


def test_corrupt_or_truncated_image_fails_naming_the_file_and_the_step(tmp_path):
    top = make_cub200_tree(tmp_path, num_classes=4, images_per_class=2)
    dataset = data.get_dataset("cub200", top, "train", transform=data.get_transform("metric", train=False))
    truncated, garbage = dataset.paths[0], dataset.paths[3]
    truncated.write_bytes(truncated.read_bytes()[:60])
    garbage.write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageReadError, match=rf"cannot read image '{truncated}'.*extract it again"):
        dataset[0]
    with pytest.raises(ImageReadError, match=rf"cannot read image '{garbage}': cannot identify image file"):
        dataset[3]
    assert dataset.verify() == [truncated, garbage]


def test_class_with_fewer_images_than_the_sampler_needs():
    labels = [0] * 3 + [1] * 6 + [2] * 6
    with pytest.raises(ValueError, match=r"1 classes have fewer than m=5 images \(class 0: 3 images\); "
                                         r"pass small_classes='drop', 'replace' or 'take_all'"):
        MPerClassSampler(labels, m=5, batch_size=10)


# ----------------------------------------------------------------------------- training


class Constant(Dataset):
    """``CLASSES`` classes of ``PER_CLASS`` seeded 1 x 8 x 8 images; ``poison`` puts NaN in one."""

    def __init__(self, poison: int | None = None, classes: int = 4, per_class: int = 6):
        generator = torch.Generator().manual_seed(0)
        self.targets = torch.arange(classes).repeat_interleave(per_class)
        self.images = torch.randn(len(self.targets), 1, 8, 8, generator=generator)
        if poison is not None:
            self.images[poison, 0, 0, 0] = math.nan

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.images[index], int(self.targets[index])


def distiller_for(method: str, **weights) -> Distiller:
    torch.manual_seed(0)
    teacher = models.build_model("small_cnn", in_channels=1, input_size=8, embedding_dim=8, normalize=True)
    student = models.build_model("small_cnn", in_channels=1, input_size=8, embedding_dim=4, normalize=True)
    return Distiller(student, teacher, get_method(method, task="metric", **weights),
                     TermContext.from_models(student, teacher))


def test_batch_too_small_for_a_loss_names_the_loss_the_fix_and_the_step():
    dataset = Constant()
    batches = [[0, 6]]  # two images: enough for RKD-D, not for RKD-A's triangles
    with pytest.raises(ValueError, match=r"rkd_angle needs at least 3 examples in the batch, got N=2; "
                                         r"use a larger batch") as info:
        fit(distiller_for("RKD-DA"), dataset, batches, TrainConfig(steps=1), progress=False)
    assert any("training step 1 of 1" in note for note in info.value.__notes__)


def test_nan_in_the_input_batch_stops_at_its_step(tmp_path):
    sampler = MPerClassSampler(Constant().targets, m=3, batch_size=6, seed=0)
    first_epoch = [batch for batch in sampler]
    poison = first_epoch[2][0]  # an image of the third batch, perhaps drawn earlier too
    poisoned_step = next(step for step, batch in enumerate(first_epoch, 1) if poison in batch)
    sampler.set_epoch(0)
    checkpoint = tmp_path / "run.ckpt"
    with pytest.raises(NonFiniteLossError, match=rf"the input batch holds NaN or inf values at step "
                                                 rf"{poisoned_step} of 10 \(train\); training stopped before the "
                                                 rf"optimiser used it\. Check the dataset and its transform"):
        fit(distiller_for("RKD-DA"), Constant(poison=poison), sampler, TrainConfig(steps=10, checkpoint_every=1),
            checkpoint_path=checkpoint, progress=False)
    assert safe_torch_load(checkpoint)["step"] == poisoned_step - 1


def diverging_after(distiller: Distiller, step: int):
    """An on_step callback that sets the student's projection to NaN after ``step``:
    a stand-in for weights that diverged."""

    def diverge(done, losses):
        if done == step:
            with torch.no_grad():
                distiller.student.projection.weight.fill_(math.nan)

    return diverge


def test_nan_embedding_stops_at_its_step():
    distiller = distiller_for("Triplet")
    sampler = MPerClassSampler(Constant().targets, m=3, batch_size=6, seed=0)
    with pytest.raises(NonFiniteLossError, match=r"the student's 'embedding' output is NaN or inf at step 4 of 10 "
                                                 r"\(train\).*lower the learning rate \(lr=0.0001\)"):
        fit(distiller, Constant(), sampler, TrainConfig(steps=10), on_step=diverging_after(distiller, 3),
            progress=False)


def test_nan_embedding_is_reported_even_where_a_loss_fails_on_it_first():
    """A loss that raises on NaN input (as torch.multinomial does) must not hide the cause."""

    class FailsOnNaN(Distiller):
        def forward(self, x, labels, **kwargs):
            losses, outputs = super().forward(x, labels, return_outputs=True)
            if torch.isnan(outputs["embedding"]).any():
                raise RuntimeError("probability tensor contains either inf, nan or element < 0")
            return losses

    plain = distiller_for("Triplet")
    distiller = FailsOnNaN(plain.student, plain.teacher, plain.method,
                           TermContext.from_models(plain.student, plain.teacher))
    sampler = MPerClassSampler(Constant().targets, m=3, batch_size=6, seed=0)
    with pytest.raises(NonFiniteLossError,
                       match=r"the student's 'embedding' output is NaN or inf at step 3 of 10") as info:
        fit(distiller, Constant(), sampler, TrainConfig(steps=10), on_step=diverging_after(distiller, 2),
            progress=False)
    assert "probability tensor contains" in str(info.value.__cause__)  # the loss's own error, kept as the cause


def test_infinite_loss_stops_before_the_optimiser_step():
    distiller = distiller_for("RKD-DA", rkd_distance=math.inf)
    before = {k: v.clone() for k, v in distiller.student.state_dict().items() if v.is_floating_point()}
    sampler = MPerClassSampler(Constant().targets, m=3, batch_size=6, seed=0)
    with pytest.raises(NonFiniteLossError, match=r"loss term 'rkd_distance' is inf at step 1 of 5 \(train\)"):
        fit(distiller, Constant(), sampler, TrainConfig(steps=5), progress=False)
    for name, value in distiller.student.state_dict().items():
        if name in before and "running" not in name:  # batch-norm statistics move in the forward pass
            assert torch.equal(value, before[name]), f"{name} was updated with an inf loss"


# ----------------------------------------------------------------------------- notebook parameters


def test_unknown_or_ill_typed_notebook_parameter():
    with pytest.raises(ParameterError, match=r"unknown notebook parameter\(s\) \['sede'\]; "
                                             r"Table 1 takes: scale, data_root, device, seeds"):
        notebook_parameters({"sede": 1}, "table1")
    with pytest.raises(ParameterError,
                       match=r"notebook parameter seeds='1' has type str; expected tuple\[int, \.\.\.\] \| None"):
        notebook_parameters({"seeds": "1"}, "table1")
    with pytest.raises(ParameterError, match=r"notebook parameter embedding_dims=\['16'\] has type list"):
        notebook_parameters({"embedding_dims": ["16"]}, "table1")
