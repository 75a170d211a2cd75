using Atelier.Core.IO;

namespace Atelier.Storage.S3;

/// <summary>
/// The access key pair of an S3 location. Read from a file its owner alone can read, or from the
/// environment; never from <c>atelier.json</c>. <see cref="ToString"/> never shows the secret.
/// </summary>
public sealed class S3Credentials
{
    /// <summary>The environment variable of the access key id when the location names none.</summary>
    public const string DefaultAccessKeyEnv = "AWS_ACCESS_KEY_ID";

    /// <summary>The environment variable of the secret access key when the location names none.</summary>
    public const string DefaultSecretKeyEnv = "AWS_SECRET_ACCESS_KEY";

    /// <summary>A key pair.</summary>
    public S3Credentials(string accessKeyId, string secretAccessKey)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(accessKeyId);
        ArgumentException.ThrowIfNullOrWhiteSpace(secretAccessKey);
        AccessKeyId = accessKeyId;
        SecretAccessKey = secretAccessKey;
    }

    /// <summary>The access key id (not secret: it appears in every request's signature).</summary>
    public string AccessKeyId { get; }

    /// <summary>The secret access key.</summary>
    public string SecretAccessKey { get; }

    /// <summary>
    /// Reads <c>access_key_id = …</c> and <c>secret_access_key = …</c> (the <c>aws_</c>-prefixed names
    /// of an AWS credentials file are accepted too; blank lines, <c>#</c> comments and one
    /// <c>[section]</c> header are ignored) from <paramref name="path"/>.
    /// </summary>
    /// <exception cref="UnauthorizedAccessException">The file's group or others may read or write it: a secret there is not secret.</exception>
    /// <exception cref="InvalidDataException">A key is missing or given twice.</exception>
    public static S3Credentials FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        SecretFile.ThrowIfReachableByOthers(path, "S3 credentials file");

        string? accessKey = null;
        string? secretKey = null;
        var sections = 0;
        foreach (var raw in File.ReadLines(path))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] is '#' or ';')
            {
                continue;
            }

            if (line[0] == '[')
            {
                // One profile per file: a second one would make which keys apply a guess.
                if (++sections > 1)
                {
                    throw new InvalidDataException($"The S3 credentials file {path} holds more than one [section]; keep one key pair per file.");
                }

                continue;
            }

            var equals = line.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                throw new InvalidDataException($"The S3 credentials file {path} has a line that is not 'name = value'.");
            }

            var name = line[..equals].Trim();
            var value = line[(equals + 1)..].Trim();
            switch (name)
            {
                case "access_key_id" or "aws_access_key_id":
                    accessKey = accessKey is null ? value : throw Twice(path, name);
                    break;
                case "secret_access_key" or "aws_secret_access_key":
                    secretKey = secretKey is null ? value : throw Twice(path, name);
                    break;
                default:
                    // Other settings of an AWS credentials file (a session token, a region) are not ours.
                    break;
            }
        }

        if (string.IsNullOrEmpty(accessKey) || string.IsNullOrEmpty(secretKey))
        {
            throw new InvalidDataException($"The S3 credentials file {path} must hold access_key_id and secret_access_key.");
        }

        return new S3Credentials(accessKey, secretKey);
    }

    /// <summary>Reads the key pair from the environment variables <paramref name="accessKeyEnv"/> and <paramref name="secretKeyEnv"/>.</summary>
    /// <exception cref="InvalidOperationException">A variable is unset or empty.</exception>
    public static S3Credentials FromEnvironment(string accessKeyEnv, string secretKeyEnv)
    {
        ArgumentException.ThrowIfNullOrEmpty(accessKeyEnv);
        ArgumentException.ThrowIfNullOrEmpty(secretKeyEnv);
        var accessKey = Environment.GetEnvironmentVariable(accessKeyEnv);
        var secretKey = Environment.GetEnvironmentVariable(secretKeyEnv);
        if (string.IsNullOrEmpty(accessKey) || string.IsNullOrEmpty(secretKey))
        {
            throw new InvalidOperationException(
                $"S3 credentials: set the environment variables {accessKeyEnv} and {secretKeyEnv}, or name a credentials file (mode 0600) in the location's s3.credentials_file.");
        }

        return new S3Credentials(accessKey, secretKey);
    }

    /// <summary>The access key id only.</summary>
    public override string ToString() => $"S3 credentials {AccessKeyId} (secret not shown)";

    private static InvalidDataException Twice(string path, string name) =>
        new($"The S3 credentials file {path} gives {name} twice.");
}
