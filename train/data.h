#pragma once
// Labelled images for training and evaluation: Fashion-MNIST's idx files (gzip), or the user's arrays in a
// .npz (arrays `images` and `labels`) or a pair of .npy files. Images are float32 in [0, 1] (uint8 arrays
// are divided by 255), one label per image, int64 (or any integer type).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace sparse24::train {

/// The Debian package dataset-fashion-mnist installs the idx files here.
inline const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// Images with their labels.
struct Dataset {
  std::string source;                 ///< for messages: "fashion-mnist train", a file name
  std::vector<int64_t> sample_shape;  ///< one image: {1, 28, 28}, {784}, ...
  std::vector<float> images;          ///< size() · features(), each in [0, 1]
  std::vector<int64_t> labels;        ///< one per image, >= 0
  int64_t size() const { return int64_t(labels.size()); }
  int64_t features() const;
  const float* image(int64_t i) const { return images.data() + i * features(); }
};

/// Which part of an idx folder to read.
enum class Split { train, test };

/// Reads a dataset. `spec` is "fashion-mnist" (the Debian folder), a folder holding the four idx .gz
/// files, a .npz with arrays `images` and `labels`, or an images .npy (then `labels_npy` names the labels
/// .npy). `limit` > 0 keeps the first `limit` images. Throws Error naming the file on anything missing or
/// malformed: counts that disagree, negative labels, pixel values outside [0, 1].
Dataset load_dataset(const std::string& spec, Split split, const std::string& labels_npy = "",
                     int64_t limit = 0);

/// Throws Error when a label is not below `classes` (naming the dataset, the index and the label).
void check_labels(const Dataset& data, int64_t classes);

/// Mean and standard deviation of every pixel of the dataset (the input normalisation of built models).
std::pair<double, double> pixel_statistics(const Dataset& data);

}  // namespace sparse24::train
