"""The registry of local-data loaders: name -> function(params, contract) -> LocalDataset.

An explicit table (no dotted paths from a data description); its names are the ones
``openfl_like.plan.local_data.LOADER_PARAMS`` validates parameters for (a test keeps the two
in step).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from openfl_like.core.errors import DataError
from openfl_like.data.csv_loader import load_csv
from openfl_like.data.dataset import ContractLike, LocalDataset, make_dataset
from openfl_like.data.digits import load_digits_shard
from openfl_like.data.image_folder import load_image_folder
from openfl_like.data.npz import load_npz

Loader = Callable[[Mapping[str, object], "ContractLike | None"], LocalDataset]


def load_digits(params: Mapping[str, object], contract: ContractLike | None) -> LocalDataset:
    """Shard ``shard`` of ``num_shards`` of the bundled digits (features (64,), classes 0..9)."""
    options = {k: params[k] for k in ("seed", "test_fraction", "valid_fraction", "method")
               if k in params}
    shard = load_digits_shard(int(params["shard"]), int(params["num_shards"]),  # type: ignore[call-overload]
                              **options)
    source = f"digits shard {shard.index}/{shard.num_shards}"
    return make_dataset(params, (shard.x_train, shard.y_train),
                        (shard.x_valid, shard.y_valid), source=source, loader="digits")


def load_digits_test(params: Mapping[str, object], contract: ContractLike | None) -> LocalDataset:
    """The digits' held-out test split (a director's or aggregator's test data), in order: its
    first half as the "train" part, the rest as "valid" (a test set is read as both together)."""
    from openfl_like.data.digits import load_digits_test_set

    options = {k: params[k] for k in ("seed", "test_fraction") if k in params}
    x, y = load_digits_test_set(**options)  # type: ignore[arg-type]
    half = len(y) // 2
    return make_dataset(params, (x[:half], y[:half]), (x[half:], y[half:]),
                        source="the digits held-out test split", loader="digits_test")


LOADERS: Mapping[str, Loader] = MappingProxyType({
    "digits": load_digits,
    "digits_test": load_digits_test,
    "npz": load_npz,
    "csv": load_csv,
    "image_folder": load_image_folder,
})


def load_local_dataset(
    loader: str, params: Mapping[str, object], *, contract: ContractLike | None
) -> LocalDataset:
    """Read a site's data with the named loader (params already validated by the plan layer)."""
    try:
        function = LOADERS[loader]
    except KeyError:
        raise DataError(f"unknown data loader {loader!r} (known: {', '.join(LOADERS)})") from None
    return function(params, contract)
