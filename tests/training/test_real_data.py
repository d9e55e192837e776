"""End to end on the real data (../shared/data): the attack set lowers generalization at zero training error."""

import pytest

from tfflat.training.run import TrainConfig, train_run


@pytest.mark.slow
@pytest.mark.parametrize("dataset, sizes, gap", [
    ("mnist", dict(train_size=500, test_size=1000), (0, 500, 0.2)),
    ("cifar_cats_cars", dict(train_size=300, test_size=500), (0, 300, 0.1)),
])
def test_attack_set_lowers_test_accuracy(data_dir, dataset, sizes, gap):
    a_small, a_big, min_gap = gap
    acc = {}
    for a in (a_small, a_big):
        _, meta, _ = train_run(TrainConfig(dataset=dataset, data_dir=data_dir, attack_size=a, max_epochs=3000,
                                           **sizes))
        assert meta["train_accuracy"] == 1.0 and meta["zero_error_epoch"] is not None
        acc[a] = meta["test_accuracy"]
    assert acc[a_small] - acc[a_big] > min_gap, acc


@pytest.mark.slow
def test_resnet50_reaches_zero_error_on_a_few_images(data_dir):
    """The real Keras ResNet50 (23.6 M parameters), 8 CIFAR images, zero error in inference mode."""
    _, meta, _ = train_run(TrainConfig(dataset="cifar_cats_cars", data_dir=data_dir, model="resnet50",
                                       optimizer="adam", bn_momentum=0.5, train_size=8, test_size=8,
                                       batch_size=8, max_epochs=40))
    assert meta["train_accuracy"] == 1.0 and meta["model_spec"]["kind"] == "resnet50"
