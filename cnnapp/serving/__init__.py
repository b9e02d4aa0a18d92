"""`cnnapp serve`: TensorFlow Serving's REST API over exported SavedModels.

`create_app(config)` builds the in-process app object (starlette); `server.serve(...)` binds the
socket with uvicorn. TensorFlow loads lazily, when the first model does.
"""

from cnnapp.serving.app import ServingApp, create_app
from cnnapp.serving.config import (BatchingParameters, ModelConfig, ServerConfig, VersionPolicy, discover_models,
                                   load_model_config_file)

__all__ = ["BatchingParameters", "ModelConfig", "ServerConfig", "ServingApp", "VersionPolicy", "create_app",
           "discover_models", "load_model_config_file"]
