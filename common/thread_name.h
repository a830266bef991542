// Names the calling thread (shown by top -H, perf's comm column, gdb), so a
// profile tells the iSCSI event loop from the file I/O workers from gRPC's
// threads. Linux keeps 15 characters.
#ifndef COMMON_THREAD_NAME_H_
#define COMMON_THREAD_NAME_H_

#include <pthread.h>

#include <string>

namespace common {

inline void SetThreadName(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace common

#endif  // COMMON_THREAD_NAME_H_
