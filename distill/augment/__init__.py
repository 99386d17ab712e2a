"""Data augmentation of the two papers, labeled afterwards by the teacher.

`tang`: Tang et al. (2019): per word, masking or a part-of-speech-guided replacement, then n-gram sampling.
`tinybert`: Jiao et al. (2020): per word, a masked language model's candidates (single-piece words) or GloVe
neighbours (the rest). `pos`: the offline English tagger both need words from.
"""
