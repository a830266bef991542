#include "appliance/nvlog/mirror_transport.h"

namespace nvlog {

interconnect::NvlogBatch OutgoingBatch::Materialize() const {
  interconnect::NvlogBatch whole = batch;
  for (int i = 0; i < whole.records_size() && i < static_cast<int>(data.size());
       ++i) {
    whole.mutable_records(i)->set_data(*data[i]);
  }
  return whole;
}

}  // namespace nvlog
