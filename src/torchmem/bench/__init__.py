"""Side-by-side benchmarks against public implementations (``pip install torchmem[bench]``)."""
