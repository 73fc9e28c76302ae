"""Independent references and generated data for tests, benchmarks and the demo (not used by training).

Modules:
    official: a re-implementation of relabel_imagenet's own target computation (dense map, roi_align,
        softmax), the reference the operator is compared with.
    synthetic: smooth synthetic top-k label maps of a chosen shape.
    demo_dataset: the demo's multi-object images (scikit-image photos) with exact ground-truth label maps.
"""
