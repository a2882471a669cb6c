// The unit that owns esft's precompiled header (cmake/EsftPrecompiled.cmake); it has no code of its own.
