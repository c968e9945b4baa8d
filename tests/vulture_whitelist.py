"""Names vulture (make lint) cannot see used: callbacks that other libraries call,
attributes written for users or for other libraries, public API of a kind."""
# callbacks called by html.parser, http.server and torch.nn.Module.__repr__
handle_starttag  # noqa
handle_endtag  # noqa
handle_data  # noqa
log_message  # noqa
extra_repr  # noqa
# attributes for the users of a dataset: CIFAR-100's and the glyph sets' coarse labels,
# SOP's super classes, the glyph world's spec, alphabets of a class
coarse_targets  # noqa
super_targets  # noqa
corpus_spec  # noqa
alphabets  # noqa
# attributes another library reads: a read-only NumPy view, cuDNN's autotuner switch, a
# ResNet stem without its max-pool
writeable  # noqa
benchmark  # noqa
maxpool  # noqa
# fields of results read by name (TrainedRun's stored fields, TrainResult's)
wall_seconds  # noqa
resumed_from  # noqa
# the comparison kind of non-inferiority, offered beside the others to the pages' claims
not_worse  # noqa
# a builder registered by a factory is named for its reference page and for pickling
__qualname__  # noqa
# RKD-A on squared-distance matrices: the tests check its hand-written gradient against
# finite differences in each entry (rkd_angle itself goes through the rows)
_AngleLossFromSquaredDistances  # noqa
