"""Networks built to take a checkpoint skip their parameter draws (rdet.backbones.skip_init): the
loaded model is the one a drawn-then-overwritten build gives, buffers included, a fresh head is
drawn, and a parameter the loader misses is refused rather than left holding memory garbage."""
import pytest
import torch

from rdet.backbones import Classifier, create_classifier, get_spec, list_backbones, load_weights
from rdet.backbones.checkpoint import _signature, classifier_checkpoint
from rdet.backbones.skip_init import check_loaded, skip_parameter_init
from rdet.core.atomic import torch_save
from rdet.core.errors import CheckpointError


def _file(tmp_path, arch, num_classes=1000):
    path = tmp_path / f"{arch}.pth"
    torch_save(classifier_checkpoint(Classifier(get_spec(arch), num_classes), {"arch": arch}), path)
    return path


@pytest.mark.parametrize("arch", ["resnet18", "convnext_atto", "swin_tiny", "vit_tiny"])
def test_loaded_model_is_the_drawn_then_overwritten_one(tmp_path, arch):
    """Every parameter and buffer, Swin's non-persistent relative position index among them, and
    the logits: bit for bit."""
    path = _file(tmp_path, arch)
    skipped = create_classifier(arch, 1000, weights=str(path)).eval()
    drawn = Classifier(get_spec(arch), 1000)
    load_weights(drawn, str(path))
    drawn.eval()
    own = dict(skipped.named_buffers())
    assert own.keys() == dict(drawn.named_buffers()).keys()
    for name, t in [*drawn.named_parameters(), *drawn.named_buffers()]:
        theirs = dict(skipped.named_parameters()).get(name, own.get(name))
        assert torch.equal(theirs, t), name
    x = torch.rand(1, 3, 64, 64) if arch in ("resnet18", "convnext_atto") else torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(skipped(x), drawn(x))


@pytest.mark.parametrize("arch", ["resnet18", "convnext_atto", "vit_tiny"])
def test_no_parameter_is_drawn(arch):
    """torch.nn.init's functions (which take their tensor by keyword when dispatched) and timm's
    truncated normal alike: the random generator is where it was."""
    state = torch.get_rng_state()
    with skip_parameter_init():
        Classifier(get_spec(arch), 1000)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_head_of_other_classes_is_drawn_fresh(tmp_path):
    path = _file(tmp_path, "resnet18")
    model = create_classifier("resnet18", 10, weights=str(path))
    w = model.head.weight
    assert w.shape == (10, 512) and torch.isfinite(w).all() and torch.isfinite(model.head.bias).all()
    bound = 512 ** -0.5  # nn.Linear's own draw: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert 0.5 * bound < w.abs().max() <= bound
    assert torch.equal(model.body.conv1.weight, torch.load(path, weights_only=True)["model"]["conv1.weight"])


def test_a_parameter_the_loader_misses_is_refused_and_holds_nan():
    sd = Classifier(get_spec("resnet18"), 1000).torchvision_state_dict()
    with skip_parameter_init() as skipped:
        model = Classifier(get_spec("resnet18"), 1000)
    assert torch.equal(model.body.bn1.running_var, torch.ones(64))  # buffers are computed as usual
    del sd["layer2.0.conv1.weight"]
    model.body.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")}, strict=False)
    model.head.load_state_dict({"weight": sd["fc.weight"], "bias": sd["fc.bias"]})
    with pytest.raises(CheckpointError, match="parameter body.layer2.0.conv1.weight was not loaded"):
        check_loaded(model, skipped, "the file")
    assert torch.isnan(model.body.layer2[0].conv1.weight).all()
    with torch.no_grad():  # written since (as load_state_dict writes): accepted
        model.body.layer2[0].conv1.weight.copy_(torch.zeros(128, 64, 3, 3))
    check_loaded(model, skipped, "the file")


@pytest.mark.slow  # every registered network, twice, on the meta device: 3 s
def test_shapes_read_without_initialisers_are_every_networks_own():
    """What sniffing a file's architecture compares against, for every registered network."""
    for arch in list_backbones():
        spec = get_spec(arch)
        with torch.device("meta"):
            net = spec.builder(1000)
        head = spec.classifier + "."
        own = {(k, tuple(v.shape)) for k, v in net.state_dict().items()
               if not k.startswith(head) and not k.endswith("num_batches_tracked")}
        assert _signature(arch) == (frozenset(own), head), arch
