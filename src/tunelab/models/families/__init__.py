"""One adapter per library, each turning that library's network into the backbone contract and naming itself
(`FAMILY`): torchvision, timm and transformers, the CNN assembly they share (`cnn`), and the tiny test models.

May import: errors, models.contract, models.inputs, models.registry (tiny registers its models).
"""
