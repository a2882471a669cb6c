#pragma once
#define ESFT_VERSION_STRING "0.1.0"
