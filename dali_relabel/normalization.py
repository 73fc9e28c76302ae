"""ImageNet's RGB normalization: the default of the pipelines and of annotator models that do not say.

torchvision's statistics, for pixel values in [0, 1] (the DALI pipelines scale them by 255).
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD"]
