"""`cnnapp serve`: TensorFlow Serving's REST and gRPC APIs over exported SavedModels.

`ServingService(config)` owns the models and runs requests (serving/service.py); `create_app(config)`
builds the REST app object over it (an ASGI app tests call without a socket);
`server.run_server(...)` takes tensorflow_model_server's options, binds REST with uvicorn and gRPC
with grpcio (`grpc_server`). TensorFlow loads lazily, when the first model does.
"""

from cnnapp.serving.app import ServingApp, create_app
from cnnapp.serving.config import (BatchingParameters, ModelConfig, ServerConfig, VersionPolicy, discover_models,
                                   load_model_config_file)
from cnnapp.serving.service import ServingService

__all__ = ["BatchingParameters", "ModelConfig", "ServerConfig", "ServingApp", "ServingService", "VersionPolicy",
           "create_app", "discover_models", "load_model_config_file"]
