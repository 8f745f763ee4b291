"""gsexplore: explore how generation parameters change what a chat model says."""
from .errors import (APIConnectionError, APIError, APITimeoutError, AuthenticationError,
                     BadRequestError, GSExploreError, ModelNotFoundError, ParamsError,
                     RateLimitError, ServerError, UnsupportedParam)
from .params import Params, ParamSpec

__version__ = "0.1.0"
