// cudasim's test driver: runs the project's operators (both backends, real SetupImpl/RunImpl)
// and the simulator's self-test kernels on cases read from stdin, writing results to stdout
// and output tensors to a binary file. tests/cudasim/harness.py writes the cases and reads
// the results; the cases and the references stay in Python.
//
// Commands, one per line, tokens separated by spaces (text tokens are percent-encoded):
//   blob PATH                      input tensor data (offsets below point into it)
//   outblob PATH                   where output tensor data is written
//   device KEY VALUE               cudasim::Configure
//   threads N                      thread-pool size of the CPU operators (default 2)
//   op ID SCHEMA cpu|gpu           create an operator; its arguments follow, then `end`:
//     arg NAME i|f|b|s VALUE       constant argument (int, float, bool, string)
//     arg NAME l N V1 .. VN        list of numbers
//     arg NAME tensor              per-sample argument input (given with each run)
//   end                            -> "created ID" or "failed ID MESSAGE" (then reported by each run)
//   run TAG OPID BATCH             run an operator; its data follows, then `endrun`:
//     in INDEX DTYPE NDIM D.. OFF  one sample of input INDEX (in sample order)
//     argin NAME DTYPE NDIM D.. OFF one sample of an argument input
//     misalign B0 B1 ..            output i's samples start Bi bytes past an aligned address
//   endrun                         -> "result TAG ok N" + per output "out I DTYPE N" and per
//                                     sample "sample NDIM D.. OFFSET"; or "result TAG error|fault MSG";
//                                     then "launch KERNEL SITE GRID BLOCK SHM STATUS" lines
//   destroy OPID
//   selftest TAG NAME ARGS..       run a self-test kernel (selftest/selftest_kernels.cu)
//   stats                          -> "stats KEY VALUE ..."
//   kernels                        -> "kernel NAME STATIC DYNAMIC BOUNDS MAXDYN BLOCKS" per kernel
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cudasim/selftest.h"
#include "cudasim/sim.h"
#include "dali/pipeline/operator/operator.h"

namespace {

std::string Encode(const std::string &s) {
  static const char *hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c <= ' ' || c == '%' || c >= 127) {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out.empty() ? "%00" : out;
}

std::string Decode(const std::string &s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const std::string h = s.substr(i + 1, 2);
      const char c = static_cast<char>(std::stoi(h, nullptr, 16));
      if (c) out += c;
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

dali::DALIDataType ParseType(const std::string &s) {
  static const std::map<std::string, dali::DALIDataType> types = {
      {"float16", DALI_FLOAT16}, {"float32", DALI_FLOAT}, {"float64", DALI_FLOAT64}, {"int8", DALI_INT8},
      {"int16", DALI_INT16},     {"int32", DALI_INT32},   {"int64", DALI_INT64},     {"uint8", DALI_UINT8},
      {"uint16", DALI_UINT16},   {"uint32", DALI_UINT32}, {"uint64", DALI_UINT64},   {"bool", DALI_BOOL}};
  auto it = types.find(s);
  if (it == types.end()) throw std::invalid_argument("driver: unknown dtype " + s);
  return it->second;
}

const char *TypeToken(dali::DALIDataType t) {
  switch (t) {
    case DALI_FLOAT16: return "float16";
    case DALI_FLOAT: return "float32";
    case DALI_FLOAT64: return "float64";
    case DALI_INT8: return "int8";
    case DALI_INT16: return "int16";
    case DALI_INT32: return "int32";
    case DALI_INT64: return "int64";
    case DALI_UINT8: return "uint8";
    case DALI_UINT16: return "uint16";
    case DALI_UINT32: return "uint32";
    case DALI_UINT64: return "uint64";
    case DALI_BOOL: return "bool";
    default: return "unknown";
  }
}

struct Sample {
  dali::DALIDataType type;
  dali::TensorShape<> shape;
  size_t offset;
};

struct Operator {
  std::string backend;
  std::unique_ptr<dali::OperatorBase> op;
};

class Driver {
 public:
  int Main() {
    cudasim::SetFatalHandler([this](const std::string &message) {
      // Threads are stuck: report the fault for the running case and let the process exit.
      std::cout << "result " << running_tag_ << " fault " << Encode(message) << std::endl;
      std::cout.flush();
    });
    cudaStreamCreate(&stream_);
    std::string line;
    while (std::getline(std::cin, line)) {
      std::istringstream in(line);
      std::string cmd;
      if (!(in >> cmd)) continue;
      try {
        Dispatch(cmd, in);
      } catch (const std::exception &e) {
        std::cout << "driver-error " << Encode(cmd + ": " + e.what()) << std::endl;
        return 2;
      }
      if (cmd == "quit") break;
      std::cout.flush();
    }
    return 0;
  }

 private:
  void Dispatch(const std::string &cmd, std::istringstream &in) {
    if (cmd == "blob") {
      std::string path;
      in >> path;
      std::ifstream f(Decode(path), std::ios::binary);
      blob_.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    } else if (cmd == "outblob") {
      std::string path;
      in >> path;
      out_.open(Decode(path), std::ios::binary | std::ios::trunc);
      out_offset_ = 0;
    } else if (cmd == "device") {
      std::string key, value;
      in >> key >> value;
      cudasim::Configure(key, value);
    } else if (cmd == "threads") {
      int n;
      in >> n;
      pool_ = std::make_unique<dali::ThreadPool>(n);
    } else if (cmd == "op") {
      CreateOp(in);
    } else if (cmd == "run") {
      Run(in);
    } else if (cmd == "destroy") {
      std::string id;
      in >> id;
      ops_.erase(id);
    } else if (cmd == "selftest") {
      SelfTest(in);
    } else if (cmd == "stats") {
      const auto s = cudasim::GetStats();
      std::cout << "stats device_bytes " << s.device_bytes << " device_allocations " << s.device_allocations
                << " pinned_bytes " << s.pinned_bytes << " registered_bytes " << s.registered_bytes
                << " registrations " << s.registrations << " func_set_attribute " << s.func_set_attribute << "\n";
    } else if (cmd == "kernels") {
      for (const auto &k : cudasim::Kernels())
        std::cout << "kernel " << Encode(k.kernel) << " " << k.static_shared << " " << k.dynamic_shared << " "
                  << k.launch_bounds << " " << k.max_dynamic_shared << "\n";
    } else if (cmd == "quit") {
    } else {
      throw std::invalid_argument("unknown command");
    }
  }

  std::string ReadLine() {
    std::string line;
    if (!std::getline(std::cin, line)) throw std::runtime_error("unexpected end of input");
    return line;
  }

  void CreateOp(std::istringstream &in) {
    std::string id, schema, backend;
    in >> id >> schema >> backend;
    std::vector<std::pair<std::string, dali::ArgumentValue>> args;
    std::vector<std::string> tensor_args;
    for (std::string line; (line = ReadLine()) != "end";) {
      std::istringstream a(line);
      std::string word, name, kind;
      a >> word >> name >> kind;
      dali::ArgumentValue v;
      if (kind == "tensor") {
        tensor_args.push_back(name);
        continue;
      } else if (kind == "i" || kind == "f" || kind == "b") {
        double x;
        a >> x;
        v.kind = kind == "i" ? dali::ArgumentValue::kInt : kind == "f" ? dali::ArgumentValue::kFloat
                                                                        : dali::ArgumentValue::kBool;
        v.numbers = {x};
      } else if (kind == "s") {
        std::string s;
        a >> s;
        v.kind = dali::ArgumentValue::kString;
        v.text = Decode(s);
      } else if (kind == "l") {
        int n;
        a >> n;
        v.kind = dali::ArgumentValue::kList;
        v.numbers.resize(n);
        for (double &x : v.numbers) a >> x;
      } else {
        throw std::invalid_argument("bad argument kind " + kind);
      }
      args.emplace_back(name, v);
    }
    running_tag_ = id;
    try {
      dali::OpSpec spec(schema);
      for (auto &[name, v] : args) spec.SetArg(name, v);
      for (auto &name : tensor_args) spec.SetArgumentInput(name);
      ops_[id] = Operator{backend, dali::OperatorRegistry::Create(schema, backend, spec)};
      std::cout << "created " << id << "\n";
    } catch (const std::exception &e) {
      // Reported with each run of the operator (DALI raises such errors when the pipeline is built).
      creation_errors_[id] = e.what();
      std::cout << "failed " << id << " " << Encode(e.what()) << "\n";
    }
  }

  template <typename Backend>
  std::shared_ptr<dali::TensorList<Backend>> MakeList(const std::vector<Sample> &samples) {
    auto t = std::make_shared<dali::TensorList<Backend>>();
    if (samples.empty()) return t;
    std::vector<dali::TensorShape<>> shapes;
    for (const auto &s : samples) shapes.push_back(s.shape);
    t->Resize(dali::TensorListShape<>(shapes), samples[0].type);
    for (size_t i = 0; i < samples.size(); ++i) {
      if (samples[i].type != samples[0].type) throw std::invalid_argument("mixed dtypes in one input");
      const size_t bytes = dali::volume(samples[i].shape) * dali::TypeSize(samples[i].type);
      if (samples[i].offset + bytes > blob_.size()) throw std::invalid_argument("sample outside the blob");
      if (bytes == 0) continue;
      if constexpr (std::is_same_v<Backend, dali::GPUBackend>) {
        if (cudaMemcpy(t->raw_mutable_tensor(i), blob_.data() + samples[i].offset, bytes, cudaMemcpyHostToDevice))
          throw std::runtime_error("driver: input copy failed");
      } else {
        std::memcpy(t->raw_mutable_tensor(i), blob_.data() + samples[i].offset, bytes);
      }
    }
    return t;
  }

  static Sample ParseSample(std::istringstream &a) {
    std::string type;
    int ndim;
    a >> type >> ndim;
    std::vector<int64_t> dims(ndim);
    for (auto &d : dims) a >> d;
    size_t offset;
    a >> offset;
    return Sample{ParseType(type), dali::TensorShape<>(dims), offset};
  }

  template <typename Backend>
  void WriteOutputs(dali::Workspace &ws, const std::vector<dali::OutputDesc> &descs) {
    std::ostringstream lines;
    for (size_t o = 0; o < descs.size(); ++o) {
      auto &t = ws.Output<Backend>(static_cast<int>(o));
      lines << "out " << o << " " << TypeToken(t.type()) << " " << t.num_samples() << "\n";
      for (int i = 0; i < t.num_samples(); ++i) {
        const auto shape = t.tensor_shape(i);
        const size_t bytes = dali::volume(shape) * t.type_size();
        std::vector<char> host(bytes);
        if constexpr (std::is_same_v<Backend, dali::GPUBackend>) {
          if (bytes && cudaMemcpy(host.data(), t.raw_tensor(i), bytes, cudaMemcpyDeviceToHost))
            throw std::runtime_error("driver: output copy failed");
        } else {
          if (bytes) std::memcpy(host.data(), t.raw_tensor(i), bytes);
        }
        out_.write(host.data(), static_cast<std::streamsize>(bytes));
        lines << "sample " << shape.sample_dim();
        for (int d = 0; d < shape.sample_dim(); ++d) lines << " " << shape[d];
        lines << " " << out_offset_ << "\n";
        out_offset_ += bytes;
      }
    }
    out_.flush();
    std::cout << "result " << running_tag_ << " ok " << descs.size() << "\n" << lines.str();
  }

  template <typename Backend>
  void RunTyped(Operator &op, int batch, const std::map<int, std::vector<Sample>> &inputs,
                const std::map<std::string, std::vector<Sample>> &arg_inputs, const std::vector<size_t> &misalign) {
    dali::Workspace ws;
    ws.SetThreadPool(pool_.get());
    ws.SetStream(stream_);
    ws.SetBatchSize(batch);
    for (const auto &[index, samples] : inputs) ws.AddInput<Backend>(MakeList<Backend>(samples));
    for (const auto &[name, samples] : arg_inputs) ws.SetArgumentInput(name, MakeList<dali::CPUBackend>(samples));
    std::vector<dali::OutputDesc> descs;
    if (!op.op->Setup(descs, ws))
      throw std::logic_error("driver: operators that do not infer their outputs are not supported");
    for (size_t o = 0; o < descs.size(); ++o) {
      const auto &d = descs[o];
      auto t = std::make_shared<dali::TensorList<Backend>>();
      t->Resize(d.shape, d.type, o < misalign.size() ? misalign[o] : 0);
      ws.AddOutput<Backend>(t);
    }
    op.op->Run(ws);
    WriteOutputs<Backend>(ws, descs);
  }

  void Run(std::istringstream &in) {
    std::string tag, opid;
    int batch;
    in >> tag >> opid >> batch;
    std::map<int, std::vector<Sample>> inputs;
    std::map<std::string, std::vector<Sample>> arg_inputs;
    std::vector<size_t> misalign;
    for (std::string line; (line = ReadLine()) != "endrun";) {
      std::istringstream a(line);
      std::string word;
      a >> word;
      if (word == "in") {
        int index;
        a >> index;
        inputs[index].push_back(ParseSample(a));
      } else if (word == "argin") {
        std::string name;
        a >> name;
        arg_inputs[name].push_back(ParseSample(a));
      } else if (word == "misalign") {
        for (size_t m; a >> m;) misalign.push_back(m);
      } else {
        throw std::invalid_argument("bad run line: " + line);
      }
    }
    running_tag_ = tag;
    cudasim::TakeLaunches();
    try {
      auto it = ops_.find(opid);
      if (it == ops_.end() && creation_errors_.count(opid)) throw std::invalid_argument(creation_errors_[opid]);
      if (it == ops_.end()) throw std::invalid_argument("driver: no operator " + opid);
      if (it->second.backend == "gpu")
        RunTyped<dali::GPUBackend>(it->second, batch, inputs, arg_inputs, misalign);
      else
        RunTyped<dali::CPUBackend>(it->second, batch, inputs, arg_inputs, misalign);
    } catch (const cudasim::KernelFault &e) {
      std::cout << "result " << tag << " fault " << Encode(e.what()) << "\n";
    } catch (const std::exception &e) {
      std::cout << "result " << tag << " error " << Encode(e.what()) << "\n";
    }
    ReportLaunches();
  }

  void ReportLaunches() {
    for (const auto &l : cudasim::TakeLaunches())
      std::cout << "launch " << Encode(l.kernel) << " " << Encode(l.site) << " " << l.grid.x << "," << l.grid.y << ","
                << l.grid.z << " " << l.block.x << "," << l.block.y << "," << l.block.z << " " << l.dynamic_shared
                << " " << cudaGetErrorName(l.status) << "\n";
  }

  void SelfTest(std::istringstream &in) {
    std::string tag, name;
    in >> tag >> name;
    std::vector<std::string> args;
    for (std::string a; in >> a;) args.push_back(a);
    running_tag_ = tag;
    cudasim::TakeLaunches();
    try {
      const std::vector<float> values = cudasim::selftest::Run(name, args);
      out_.write(reinterpret_cast<const char *>(values.data()), static_cast<std::streamsize>(values.size() * 4));
      out_.flush();
      std::cout << "result " << tag << " ok 1\nout 0 float32 1\nsample 1 " << values.size() << " " << out_offset_
                << "\n";
      out_offset_ += values.size() * 4;
    } catch (const cudasim::KernelFault &e) {
      std::cout << "result " << tag << " fault " << Encode(e.what()) << "\n";
    } catch (const std::exception &e) {
      std::cout << "result " << tag << " error " << Encode(e.what()) << "\n";
    }
    ReportLaunches();
  }

  std::vector<char> blob_;
  std::ofstream out_;
  size_t out_offset_ = 0;
  std::unique_ptr<dali::ThreadPool> pool_ = std::make_unique<dali::ThreadPool>(2);
  cudaStream_t stream_ = nullptr;
  std::map<std::string, Operator> ops_;
  std::map<std::string, std::string> creation_errors_;
  std::string running_tag_ = "-";
};

}  // namespace

int main() { return Driver().Main(); }
