"""The official relabel_imagenet training data path, re-implemented for the benchmarks.

relabel_imagenet's loader (``ImageFolderWithCoordsAndLabelMap``) decodes with PIL, draws a random-resized
crop and keeps its normalized coordinates, and loads the image's ``[2, K, H, W]`` ``.pt`` label map, all in
DataLoader workers. Per iteration, the training loop then scatters the batch's maps into a dense
``[B, C, H, W]`` tensor on the host, copies it to the device, and RoIAligns + softmaxes it there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dali_relabel.image_folder import ImageList
from dali_relabel.normalization import IMAGENET_MEAN, IMAGENET_STD
from dali_relabel.store import LabelStore
from dali_relabel.testing.official import dense_label_maps, official_relabel_targets


class OfficialDataset(torch.utils.data.Dataset):
    """relabel_imagenet's ImageFolderWithCoordsAndLabelMap, re-implemented: (image, label, coords, map).

    ``coords`` is the crop's normalized ``(y0, x0, y1, x1)``; ``map`` the image's ``[2, K, H, W]`` float32
    tensor loaded from ``<maps_root>/<key without extension>.pt``.
    """

    def __init__(self, root: str | Path, maps_root: str | Path, crop_size: int = 224):
        import torchvision.transforms as T

        self.imgs = ImageList.from_folder(root)
        self.root, self.maps_root, self.crop_size = Path(root), Path(maps_root), crop_size
        self.rrc = T.RandomResizedCrop(crop_size)
        self.post = T.Compose([T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        import torchvision.transforms.functional as F
        from PIL import Image

        key = self.imgs.keys[i]
        img = Image.open(self.root / key).convert("RGB")
        y, x, h, w = self.rrc.get_params(img, self.rrc.scale, self.rrc.ratio)
        coords = torch.tensor([y / img.height, x / img.width, (y + h) / img.height, (x + w) / img.width])
        img = self.post(F.resized_crop(img, y, x, h, w, [self.crop_size, self.crop_size]))
        maps = torch.load(self.maps_root / (key.rsplit(".", 1)[0] + ".pt"))
        return img, self.imgs.labels[i], coords, maps


def official_loader(images_root: str | Path, maps_root: str | Path, batch: int, workers: int, *,
                    pin_memory: bool, drop_last: bool = False,
                    persistent_workers: bool | None = None) -> torch.utils.data.DataLoader:
    """The official DataLoader: shuffled, ``workers`` worker processes; batches of (images, labels, coords, maps)."""
    if persistent_workers is None:
        persistent_workers = workers > 0
    return torch.utils.data.DataLoader(OfficialDataset(images_root, maps_root), batch_size=batch, shuffle=True,
                                       num_workers=workers, pin_memory=pin_memory, drop_last=drop_last,
                                       persistent_workers=persistent_workers)


def official_targets(maps: torch.Tensor, coords: torch.Tensor, num_classes: int,
                     device: str | torch.device) -> torch.Tensor:
    """The official per-iteration label work: dense scatter on the host, copy, roi_align + softmax on the device.

    Args:
        maps: ``[B, 2, K, H, W]`` top-k maps from the loader (host).
        coords: ``[B, 4]`` normalized crop boxes (y0, x0, y1, x1).
        num_classes: C.
        device: where the dense maps go (the training device).

    Returns:
        ``[B, C]`` probabilities on ``device``.
    """
    dense = dense_label_maps(maps, num_classes).to(device)  # [B, C, H, W]: ~0.9 MB per sample at C=1000
    return official_relabel_targets(maps, coords.to(device), num_classes, dense=dense)


def export_official_maps(store: LabelStore, out: Path) -> None:
    """Writes the store as relabel_imagenet's per-image [2, K, H, W] float32 .pt files."""
    scores, classes = store.read(slice(0, store.num_samples))
    for key, s, c in zip(store.keys.tolist(), scores, classes):
        path = out / (key.rsplit(".", 1)[0] + ".pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        t = torch.stack([torch.from_numpy(s.astype(np.float32)), torch.from_numpy(c.astype(np.float32))])
        torch.save(t.permute(0, 3, 1, 2).contiguous(), path)
