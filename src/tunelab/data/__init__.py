"""Reading labelled data sets (image folders, idx files, text tables) and turning them into batches.

Readers return `Examples` (inputs, integer labels, class names) or `Splits` (train and val); datasets
and transforms turn those into tensors using the backbone's own `ImageInput` / `TextInput`.
"""

from __future__ import annotations

from tunelab.data.datasets import ImageDataset, TextDataset, text_collate
from tunelab.data.examples import Examples, Splits
from tunelab.data.idx import read_idx
from tunelab.data.images import image_pixel_limit, load_image, load_images, read_image_folder, read_image_folder_as
from tunelab.data.splits import split_examples, stratified_kfold, stratified_split, stratified_subset
from tunelab.data.text import load_text, read_text_table
from tunelab.data.transforms import image_transform

__all__ = [
    "Examples",
    "ImageDataset",
    "Splits",
    "TextDataset",
    "image_pixel_limit",
    "image_transform",
    "load_image",
    "load_images",
    "load_text",
    "read_idx",
    "read_image_folder",
    "read_image_folder_as",
    "read_text_table",
    "split_examples",
    "stratified_kfold",
    "stratified_split",
    "stratified_subset",
    "text_collate",
]
