"""The ``description.md`` that ``podium init`` writes: the competition's Overview page.

It is the organizer's file from then on (Markdown; the board renders it through a Markdown
library and a sanitiser, so raw HTML and scripts never reach a visitor). ``podium init`` writes
a real description for the built-in datasets and a skeleton to fill in for ``images``, and never
overwrites one that exists.
"""
from __future__ import annotations


def _data_facts(facts: dict | None) -> str:
    if not facts:
        return ""
    size = facts.get("image_size")
    lines = [
        f"- {facts['train_images']:,} training images and {facts['test_images']:,} test images"
        + (f", {size} x {size} pixels, RGB." if size else "."),
    ]
    if facts.get("hidden_test"):
        lines.append(
            "- The test images are **hidden**: you get the training data only and submit a model checkpoint, "
            "which the organizer's machines run on the test images. Prediction CSVs are not accepted."
        )
    return "\n".join(lines) + "\n"


CIFAR10 = """# {title}

Classify 32 x 32 colour photographs into ten classes: {classes}.

CIFAR-10 (Krizhevsky, 2009) is a labelled subset of the 80 million tiny images collection: 60,000
images, 6,000 per class, split into 50,000 for training and 10,000 for testing. The classes are
mutually exclusive: *automobile* is cars, sedans and SUVs, *truck* only big trucks, and neither
includes pickup trucks.

## Data

{facts}
The test images are shuffled and renamed with opaque ids, so their public CIFAR-10 order gives
nothing away. Note that CIFAR-10's test labels are public: a CSV can be matched by pixels.
{honesty}

## The reference baseline

A torchvision ResNet-50 pretrained on ImageNet, its last layer replaced for 10 classes, trained for
3 epochs with SGD (lr 0.001, batch 128) on images resized to 224 x 224 with random crops and
horizontal flips. Beat it.

## Citation

Alex Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, 2009.
"""

DIGITS = """# {title}

Recognise handwritten digits (0 to 9).

The images are scikit-learn's bundled copy of the UCI *Optical Recognition of Handwritten Digits*
test set: 1,797 digits written by 43 people, scanned and reduced to 8 x 8 grey levels, here upscaled
to 32 x 32 RGB. It needs no download, which makes it the dataset of podium's demo and tests.

## Data

{facts}
The split between training and test images is fixed and stratified by digit; the test images are
shuffled and renamed with opaque ids.

## Citation

E. Alpaydin and C. Kaynak, *Optical Recognition of Handwritten Digits*, UCI Machine Learning
Repository, 1998.
"""

IMAGES = """# {title}

> podium init wrote this skeleton: replace each part in angle brackets (and this note), then reload
> the page. It is Markdown: HTML in it is shown as text, never run.

<One paragraph: what is in the images, and what a model must tell apart.>

## Classes

{class_list}

## Data

{facts}
<Where the images come from, who labelled them and how, and anything surprising in them.>

## Acknowledgements

<Who collected the data, the licence it is shared under, and how to cite it.>
"""


def description_markdown(dataset: str, title: str, classes: tuple[str, ...], facts: dict | None = None) -> str:
    """The description.md text for a freshly built competition."""
    fact_text = _data_facts(facts)
    if dataset == "cifar10":
        honesty = (
            "This competition keeps its test images hidden, so only submitted models are scored."
            if facts and facts.get("hidden_test")
            else "Checkpoint submissions, which the organizer's machines run, avoid that problem."
        )
        return CIFAR10.format(title=title, classes=", ".join(classes), facts=fact_text, honesty=honesty)
    if dataset == "digits":
        return DIGITS.format(title=title, facts=fact_text)
    class_list = "\n".join(f"- `{c}`: <what this class is>" for c in classes)
    return IMAGES.format(title=title, class_list=class_list, facts=fact_text)
