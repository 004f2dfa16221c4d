"""Known weights, the download cache, and weights names or paths resolved to local files.

``resolve_model("spike2former-sdtv2-ade20k")`` returns a local s2f model file, downloading,
checking and converting the official checkpoint on first use; ``download()`` does the same for
any URL or local file; ``catalog()`` lists the registry and the cache.
"""

from .cache import Cache, cache_dir, check_name, default_cache_dir
from .catalog import catalog
from .download import DownloadResult, download, sha256_file
from .fetch import DEFAULT_TIMEOUT, ProgressCallback
from .install import check_model_file, fit_class_names
from .offline import is_offline
from .registry import DEFAULT_MODEL, WeightsEntry, get_entry, load_registry
from .resolve import resolve_backbone, resolve_model

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TIMEOUT",
    "Cache",
    "DownloadResult",
    "ProgressCallback",
    "WeightsEntry",
    "cache_dir",
    "catalog",
    "check_model_file",
    "check_name",
    "default_cache_dir",
    "download",
    "fit_class_names",
    "get_entry",
    "is_offline",
    "load_registry",
    "resolve_backbone",
    "resolve_model",
    "sha256_file",
]
